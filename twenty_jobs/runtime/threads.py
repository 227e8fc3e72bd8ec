"""Threads for blocking handlers (a plain `def` handler): one queue worker's pool, at most one
thread per concurrency slot, started on first use.

The handler runs on a thread so the event loop stays free for what must not stop while it runs:
lock renewal and the stalled check (runtime/locks.py, runtime/stalled.py). A handler that blocks
the loop instead lets its lock expire, and another worker, Node or Python, runs the job again
(docs/any-bullmq-app.md, "Blocking handlers"). CPU-bound Python code holds the GIL, but the
interpreter hands it to the loop's thread every switch interval (5 ms), which is all renewal needs.

The threads are daemon threads: a handler cannot be interrupted, so at a forced stop the process
exits without waiting for it, and its job is left to the stall checker like any job cut short.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_Work = tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, contextvars.Context, Callable[..., Any], tuple[Any, ...]]


class HandlerThreads:
    """Runs blocking calls for one queue worker on up to `size` threads."""

    def __init__(self, queue_name: str, size: int) -> None:
        self.queue_name = queue_name
        self.size = size
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._busy = 0  # calls handed out and not yet returned (counted on the loop's thread)

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """`func(*args)` on a pool thread, in a copy of the caller's context variables."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._busy += 1
        try:
            if self._busy > len(self._threads) and len(self._threads) < self.size:
                self._start_thread()
            self._work.put((future, loop, contextvars.copy_context(), func, args))
            return await future
        finally:
            self._busy -= 1

    def close(self) -> None:
        """Let every thread end once the call it is running returns."""
        for _ in self._threads:
            self._work.put(None)
        self._threads.clear()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._serve, name=f"twenty-jobs {self.queue_name} #{len(self._threads) + 1}",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            future, loop, context, func, args = work
            if future.cancelled():  # the job was cut short before its turn came
                continue
            try:
                result = context.run(func, *args)
            except Exception as exc:
                _settle(loop, future, None, exc)
            except BaseException as exc:  # SystemExit and the like end a thread, not a worker slot
                _settle(loop, future, None, RuntimeError(f"the handler raised {type(exc).__name__}: {exc}"))
            else:
                _settle(loop, future, result, None)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any,
            error: BaseException | None) -> None:
    def settle() -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed while the handler ran: nobody is waiting any more
        pass
