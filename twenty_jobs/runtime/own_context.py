"""Run a coroutine in a context of its own without a task of its own."""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from typing import Any


class InOwnContext:
    """Await a coroutine with each of its steps run inside `ctx` (a copied contextvars.Context).

    What a task per job gives the handler (its context variables stay its own) without a task
    per job: no task to create and no extra event-loop turns to start it and to hear it finish
    (measured: 25% of the throughput at concurrency 1). The awaiting task passes every future
    the coroutine yields up to the loop and sends or throws the outcome back, as asyncio's Task
    does, so cancellation reaches the handler exactly as before. `asyncio.current_task()` is the
    slot's task (shared by the slot's successive jobs).
    """

    __slots__ = ("coro", "ctx")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context) -> None:
        self.coro = coro
        self.ctx = ctx

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run = self.coro, self.ctx.run
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    yielded = run(coro.send, value)
                else:
                    yielded = run(coro.throw, error)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: it belongs to the handler
                value, error = None, exc
