"""`twenty-jobs work --processes N`: run N worker processes and keep them running.

One worker process runs every handler on one event loop, so a CPU-bound handler is capped at one
core. The supervisor starts N copies of the same worker command (each one a full `twenty-jobs
work`, with its own Redis connections and heartbeat) and looks after them:

- A child that exits 0 is done (`--burst` found the queues empty); it is not restarted.
- A child that exits 2 (bad arguments or configuration, the CLI's code for those) is not
  restarted either: restarting cannot fix it. The others are stopped and the supervisor exits 2.
- Any other exit (a non-zero code, or death by a signal such as the OOM killer's SIGKILL) is a
  crash: the child is restarted after a backoff that doubles from `initial_backoff_s` up to
  `max_backoff_s`. A child that crashes `crash_limit` times within `crash_window_s` is crash
  looping: one ERROR line says so, the others are stopped, and the supervisor exits 1.
- SIGTERM or SIGINT is forwarded to every child, which drains its active jobs within its own
  `--grace`. Children still running `grace_s + shutdown_margin_s` after the signal are killed
  (their jobs stay in Redis for stall recovery, as for any killed worker). A second signal is
  forwarded too, which tells the children to stop at once.
- The exit code is 0 when every child's last run exited 0, otherwise the highest of their codes
  (death by signal N counts as 128+N, the shell's convention).

Children run in their own process group, so a terminal's Ctrl-C reaches them once, through the
supervisor: were they in the terminal's group, each would get the key's SIGINT and then the
forwarded one, and a second signal means "stop now, do not drain". On Linux a child also gets
SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so a killed supervisor leaves no orphans.

Metrics ports: child i gets `--metrics-port BASE+i` (`child_argv_for` rewrites the argument;
port 0 stays 0). Each process serves its own /metrics and /healthz; nothing is aggregated, so
scrape every port (Prometheus sums per-process counters itself).

The loop polls its children every `POLL_INTERVAL_S` instead of using asyncio: it starts no
threads, which keeps `preexec_fn` (needed for PR_SET_PDEATHSIG) safe to use.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("twenty_jobs.supervisor")

EXIT_CRASH_LOOP = 1
# The CLI's exit code for bad arguments or configuration (twenty_jobs/cli/errors.py, EXIT_USAGE).
EXIT_CONFIG = 2
POLL_INTERVAL_S = 0.05
# Time a child gets after its own --grace to close connections and exit before it is killed.
SHUTDOWN_MARGIN_S = 10.0
METRICS_PORT_OPTION = "--metrics-port"
MAX_PORT = 65535
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# <linux/prctl.h>: deliver a signal to this process when its parent thread dies.
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart a crashed child, and when to give up on it."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    crash_limit: int = 5
    crash_window_s: float = 60.0

    def backoff_s(self, recent_crashes: int) -> float:
        """Delay before the restart that follows the `recent_crashes`-th crash in the window."""
        return float(min(self.initial_backoff_s * 2 ** max(recent_crashes - 1, 0), self.max_backoff_s))


def available_cpus() -> int:
    """The CPUs this process may run on (a cpuset or `taskset` pins fewer than the machine has).
    A container's CPU quota (a Kubernetes CPU limit) is not visible here: set N explicitly there."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_processes(value: str) -> int:
    """`--processes` as given on the command line: a whole number >= 1, or `auto` (one per CPU)."""
    text = value.strip().lower()
    if text == "auto":
        return available_cpus()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--processes must be a whole number >= 1 or 'auto', not '{value}'")
    return count


def _offset_port(value: str, index: int) -> str:
    try:
        base = int(value)
    except ValueError:
        return value  # not a number: the child reports the bad value itself, in its own words
    if base == 0:
        return value  # 0 = every child picks a free port of its own
    port = base + index
    if port > MAX_PORT:
        raise ValueError(
            f"{METRICS_PORT_OPTION} {base} leaves no room for process {index}: it would need port {port} "
            f"(> {MAX_PORT}); pick a base port at most {MAX_PORT - index}"
        )
    return str(port)


def child_argv_for(argv: Sequence[str], index: int) -> list[str]:
    """The command of child `index`: `argv` with `--metrics-port BASE` (or `--metrics-port=BASE`)
    turned into BASE+index, so that N processes on one host do not fight over one port."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == METRICS_PORT_OPTION and i + 1 < len(out):
            out[i + 1] = _offset_port(out[i + 1], index)
        elif arg.startswith(METRICS_PORT_OPTION + "="):
            out[i] = f"{METRICS_PORT_OPTION}={_offset_port(arg.partition('=')[2], index)}"
    return out


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def shell_exit_code(code: int) -> int:
    """A Popen returncode as a process exit code: death by signal N is 128+N."""
    return 128 - code if code < 0 else code


def _exit_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: have the kernel send the child SIGTERM when the supervisor dies."""

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent_pid:
            os._exit(1)  # the supervisor died before prctl took effect: nobody would stop us

    return arrange


@dataclass(slots=True)
class _Child:
    index: int
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None  # monotonic time of the next start, while waiting out a backoff
    crashes: deque[float] = field(default_factory=deque)  # monotonic times of recent crashes
    last_code: int | None = None
    done: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Supervisor:
    """Runs N copies of one worker command; see the module docstring for the rules."""

    def __init__(
        self,
        processes: int,
        child_argv: Sequence[str],
        *,
        grace_s: float = 30.0,
        shutdown_margin_s: float = SHUTDOWN_MARGIN_S,
        policy: RestartPolicy | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, not {processes}")
        if not child_argv:
            raise ValueError("the worker command is empty")
        # Computed up front so that a bad metrics port is refused before any child starts.
        self.children = [_Child(i, child_argv_for(child_argv, i)) for i in range(processes)]
        self.drain_timeout_s = grace_s + shutdown_margin_s
        self.policy = policy or RestartPolicy()
        self.verdict: int | None = None  # set when the supervisor gives up (crash loop, bad config)
        self._signals: list[int] = []  # appended by the signal handler, consumed by the loop
        self._handled_signals = 0
        self._stop_deadline: float | None = None
        self._killed = False

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def run(self) -> int:
        """Start the children and supervise them until all have exited; returns the exit code.
        Must run in the main thread (it installs SIGTERM/SIGINT handlers, restored on return)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for child in self.children:
                if self.stopping:  # an earlier child could not even start
                    child.done = True
                else:
                    self._start(child)
            pids = ", ".join(str(c.pid) for c in self.children if c.pid is not None)
            log.info("supervising %d worker processes (pids %s)", len(self.children), pids)
            while not all(child.done for child in self.children):
                self._handle_signals()
                self._reap()
                self._restart_due()
                self._enforce_deadline()
                time.sleep(POLL_INTERVAL_S)
        except BaseException:
            self._forward(signal.SIGTERM)  # never leave children behind without a stop request
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code()

    def exit_code(self) -> int:
        if self.verdict is not None:
            return self.verdict
        return max(shell_exit_code(c.last_code or 0) for c in self.children)

    # -- children ----------------------------------------------------------------------------

    def _start(self, child: _Child) -> None:
        preexec = _exit_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
        try:
            # No stdin: in its own process group a child reading a terminal would be stopped (SIGTTIN).
            child.process = subprocess.Popen(
                child.argv, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=preexec
            )
        except OSError as exc:
            child.done = True
            log.error("cannot start worker process %d (%s): %s", child.index, child.argv[0], exc.strerror or exc)
            self._give_up(EXIT_CONFIG)

    def _reap(self) -> None:
        for child in self.children:
            if child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            pid = child.process.pid
            child.process = None
            child.last_code = code
            self._on_exit(child, pid, code)

    def _on_exit(self, child: _Child, pid: int, code: int) -> None:
        if self.stopping or code == 0:
            child.done = True
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "worker process %d (pid %d) %s", child.index, pid, describe_exit(code))
            return
        if code == EXIT_CONFIG:
            child.done = True
            log.error(
                "worker process %d (pid %d) exited with code %d (bad arguments or configuration, see its message "
                "above): not restarting it; stopping every worker process", child.index, pid, code,
            )
            self._give_up(EXIT_CONFIG)
            return
        now = time.monotonic()
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.policy.crash_window_s:
            child.crashes.popleft()
        if len(child.crashes) >= self.policy.crash_limit:
            child.done = True
            log.error(
                "worker process %d is crash looping: it crashed %d times within %.0f s (last: %s); giving up and "
                "stopping every worker process. Fix the cause shown in its output above, then start again",
                child.index, len(child.crashes), self.policy.crash_window_s, describe_exit(code),
            )
            self._give_up(EXIT_CRASH_LOOP)
            return
        delay = self.policy.backoff_s(len(child.crashes))
        child.restart_at = now + delay
        log.warning(
            "worker process %d (pid %d) %s; restarting it in %.1f s", child.index, pid, describe_exit(code), delay
        )

    def _restart_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                self._start(child)
                if child.pid is not None:
                    log.info("worker process %d restarted (pid %d)", child.index, child.pid)

    # -- stopping ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only record it: the loop acts on it outside the handler.
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._handled_signals < len(self._signals):
            sig = self._signals[self._handled_signals]
            self._handled_signals += 1
            name = signal.Signals(sig).name
            if not self.stopping:
                live = sum(1 for c in self.children if c.process is not None)
                log.warning(
                    "%s received: asking %d worker process(es) to finish their active jobs (up to %.0f s; "
                    "signal again to stop now)", name, live, self.drain_timeout_s,
                )
                self._begin_stop()
            else:
                log.warning("%s received again: telling the worker processes to stop now", name)
            self._forward(sig)

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self._stop_deadline = time.monotonic() + self.drain_timeout_s
        for child in self.children:
            if child.restart_at is not None:  # waiting out a backoff: stays stopped
                child.restart_at = None
                child.done = True

    def _give_up(self, code: int) -> None:
        if self.verdict is None:
            self.verdict = code
        if not self.stopping:
            self._begin_stop()
            self._forward(signal.SIGTERM)

    def _forward(self, sig: int) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, sig)

    def _enforce_deadline(self) -> None:
        if self._stop_deadline is None or self._killed or time.monotonic() < self._stop_deadline:
            return
        self._killed = True
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                log.warning(
                    "worker process %d (pid %d) is still running %.0f s after the stop request: killing it; its "
                    "active jobs stay in Redis and are recovered by the stall checker once their locks expire",
                    child.index, child.process.pid, self.drain_timeout_s,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGKILL)


def run_supervisor(
    processes: int,
    child_argv: list[str],
    *,
    grace_s: float = 30.0,
    shutdown_margin_s: float = SHUTDOWN_MARGIN_S,
    policy: RestartPolicy | None = None,
) -> int:
    """Run `processes` copies of `child_argv` (a worker command without `--processes`) until they
    have all exited; returns the combined exit code. `grace_s` is the children's `--grace`.

    Raises ValueError before starting anything when the arguments cannot work (processes < 1, an
    empty command, a `--metrics-port` base too high for N ports). Call it from the main thread.
    """
    supervisor = Supervisor(
        processes, child_argv, grace_s=grace_s, shutdown_margin_s=shutdown_margin_s, policy=policy
    )
    return supervisor.run()
