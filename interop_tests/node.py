"""Drive the Node fixture (node_fixture/bin/fixture.js) from Python tests.

    from interop_tests.node import run_fixture, NodeWorker

    job = run_fixture("add", queue="webhook-queue", name="CallWebhookJob", data={"a": 1}, prefix=p)
    with NodeWorker("webhook-queue", prefix=p) as worker:
        ...
    worker.records()  # one dict per processed attempt

Options are passed as `--key value` flags: underscores in keyword names become dashes, dicts and
lists are sent as JSON text, `True` is a bare flag, `None` and `False` are left out. Every command
prints one JSON document, which is returned parsed. The bullmq build is chosen by
TWENTY_JOBS_NODE_BULLMQ (5.40.0 | 5.78.0 | 5-latest | 6.4 | 6.7 | an exact version
installed by `make interop NODE_BULLMQ=...`), inherited from the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "node_fixture"
FIXTURE = FIXTURE_DIR / "bin" / "fixture.js"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_TIMEOUT_S = 60.0


class FixtureError(RuntimeError):
    """A fixture command exited non-zero or printed something that is not one JSON document."""


def fixture_installed() -> bool:
    return (FIXTURE_DIR / "node_modules" / "bullmq" / "package.json").is_file()


def _check_installed() -> None:
    if not fixture_installed():
        raise FixtureError(
            f"the Node fixture's packages are not installed ({FIXTURE_DIR / 'node_modules'} is missing): "
            "run `make install` (or `npm ci` in node_fixture/)"
        )


def fixture_env(*, prefix: str | None = None, redis_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if prefix is not None:
        env["TJ_PREFIX"] = prefix
    return env


def fixture_args(cmd: str, opts: dict[str, Any]) -> list[str]:
    args = ["node", str(FIXTURE), cmd]
    for key, value in opts.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, dict | list):
            args += [flag, json.dumps(value)]
        else:
            args += [flag, str(value)]
    return args


def _parse_output(cmd: str, code: int, out: str, err: str) -> dict[str, Any]:
    if code != 0:
        raise FixtureError(f"fixture {cmd} exited {code}: {err.strip() or out.strip()}")
    try:
        result: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError as exc:
        raise FixtureError(f"fixture {cmd} printed no JSON ({exc}): {out[:500]!r} stderr={err[:500]!r}") from None
    return result


def run_fixture(
    cmd: str,
    *,
    prefix: str | None = None,
    redis_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    **opts: Any,
) -> dict[str, Any]:
    """Run one fixture command and return its JSON output (blocking)."""
    _check_installed()
    proc = subprocess.run(
        fixture_args(cmd, opts),
        env=fixture_env(prefix=prefix, redis_url=redis_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return _parse_output(cmd, proc.returncode, proc.stdout, proc.stderr)


async def arun_fixture(
    cmd: str,
    *,
    prefix: str | None = None,
    redis_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    **opts: Any,
) -> dict[str, Any]:
    """`run_fixture` without blocking the event loop (use it beside an in-process Python worker)."""
    _check_installed()
    proc = await asyncio.create_subprocess_exec(
        *fixture_args(cmd, opts),
        env=fixture_env(prefix=prefix, redis_url=redis_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FixtureError(f"fixture {cmd} did not finish within {timeout} s") from None
    assert proc.returncode is not None
    return _parse_output(cmd, proc.returncode, out.decode(), err.decode())


class NodeWorker:
    """A Node bullmq Worker (`fixture.js work`) running in the background.

    Records every processed attempt as one JSON line in a file; `records()` reads them. Use as a
    context manager, or call `start()` / `stop()`. `stop()` sends SIGTERM (graceful close) and
    returns the fixture's summary `{"processed": n, "reason": ...}`.
    """

    def __init__(
        self,
        queue: str,
        *,
        prefix: str | None = None,
        redis_url: str | None = None,
        out: Path | str | None = None,
        **opts: Any,
    ) -> None:
        self.queue = queue
        self.prefix = prefix
        self.redis_url = redis_url
        # A temp file of our own is removed once the worker has exited (its records are kept).
        self._owns_out = out is None
        if out is None:
            fd, name = tempfile.mkstemp(prefix="tj-node-worker-", suffix=".jsonl")
            os.close(fd)
            out = name
        self.out = Path(out)
        self._final_records: list[dict[str, Any]] | None = None
        self.opts = opts
        self.proc: subprocess.Popen[str] | None = None
        self.summary: dict[str, Any] | None = None
        self._stderr: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, wait_ready: bool = True, timeout: float = 20.0) -> NodeWorker:
        _check_installed()
        args = fixture_args("work", {"queue": self.queue, "out": str(self.out), **self.opts})
        self.proc = subprocess.Popen(
            args,
            env=fixture_env(prefix=self.prefix, redis_url=self.redis_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            if not self._ready.is_set() and line.startswith("{") and '"ready":true' in line.replace(" ", ""):
                self._ready.set()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            assert self.proc is not None
            if self.proc.poll() is not None:
                self._join_reader()
                if self._ready.is_set():  # ready, then done at once (e.g. --max-jobs 1 with its job waiting)
                    return
                raise FixtureError(f"node worker exited {self.proc.returncode} before ready: {self.stderr}")
            if time.monotonic() > deadline:
                raise FixtureError(f"node worker not ready within {timeout} s: {self.stderr}")

    async def astart(self, timeout: float = 20.0) -> NodeWorker:
        self.start(wait_ready=False)
        await asyncio.to_thread(self.wait_ready, timeout)
        return self

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """SIGTERM, wait for the graceful close, return the summary."""
        if self.proc is None:
            raise FixtureError("node worker was never started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    async def astop(self, timeout: float = 20.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.stop, timeout)

    def wait(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the worker to exit by itself (--max-jobs / --timeout-ms); returns the summary."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise FixtureError(f"node worker did not exit within {timeout} s: {self.stderr}") from None
        self._join_reader()
        self._release_out()
        out = self.proc.stdout.read() if self.proc.stdout else ""
        self.summary = _parse_output("work", self.proc.returncode, out, self.stderr)
        return self.summary

    def _release_out(self) -> None:
        if self._owns_out and self._final_records is None:
            self._final_records = self.records()
            self.out.unlink(missing_ok=True)

    async def await_exit(self, timeout: float = 60.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.wait, timeout)

    def kill(self) -> None:
        """SIGKILL (only this process, by pid)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._release_out()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def __enter__(self) -> NodeWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except FixtureError:
                self.kill()

    async def __aenter__(self) -> NodeWorker:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.__exit__, *exc)

    # -- results ---------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every attempt the worker started so far, in order (one JSON line each)."""
        if self._final_records is not None:
            return self._final_records
        if not self.out.exists():
            return []
        # Only newline-terminated lines: a line being written right now is picked up next time.
        lines = self.out.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in lines if line]

    def wait_for_records(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len(records) >= count:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node worker recorded {len(records)} of {count} jobs in {timeout} s: {self.stderr}"
                )
            time.sleep(0.02)

    async def await_records(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len(records) >= count:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node worker recorded {len(records)} of {count} jobs in {timeout} s: {self.stderr}"
                )
            await asyncio.sleep(0.02)
