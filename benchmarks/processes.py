"""Worker processes under test, seen from outside: start, stop, CPU and memory from /proc.

CPU is read from `/proc/<pid>/stat` (utime + stime of every thread, live or dead, in clock ticks of
10 ms) summed over the process and its descendants, so a worker that forks (`--processes N`) is
measured whole. Memory is `VmRSS` from `/proc/<pid>/status`; peak RSS is `ru_maxrss` from
`os.wait4` when the process is reaped (docs/benchmarks.md, "Linux process accounting").
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the command name: state(3) ppid(4) ... utime(14) stime(15), here 0-based from field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, grandchildren...)."""
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parent_of[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parent_of.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per process of the tree rooted at `pid`."""
    return {p: process_cpu_s(p) for p in [pid, *descendants(pid)]}


def cpu_between(start: dict[int, float], end: dict[int, float]) -> float:
    """CPU seconds the tree spent between two `tree_cpu` samples (new processes count from 0)."""
    return sum(max(0.0, cpu - start.get(p, 0.0)) for p, cpu in end.items())


def rss_mb(pid: int) -> float:
    """Resident set size of the tree rooted at `pid`, in MB (0 if gone)."""
    total_kb = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
    return total_kb / 1024


class WorkerProcess:
    """A process under test. Its stderr (and, unless it speaks JSON lines, its stdout) goes to a log
    file, as a user's logs go to a file; a JSON-lines process's events are read from stdout."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path,
                 json_lines: bool = True) -> None:
        self.name = name
        self.log_path = log_path
        self.log: IO[bytes] = open(log_path, "wb")  # closed in wait()
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE if json_lines else self.log, stderr=self.log,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.reader: threading.Thread | None = None
        if json_lines:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        self.rusage: Any = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").strip())
        self.lines.put(None)

    def event(self, name: str, timeout: float) -> dict[str, Any]:
        """The next JSON-lines event called `name` (others are kept in `events`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no '{name}' from {self.name} within {timeout:.0f} s{self.log_tail()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name} exited before '{name}'{self.log_tail()}")
            with contextlib.suppress(json.JSONDecodeError):
                record: dict[str, Any] = json.loads(line)
                self.events.append(record)
                if record.get("event") == name:
                    return record

    def exited(self) -> bool:
        """Whether the process has exited, without reaping it (its /proc entry and its rusage stay
        readable until wait())."""
        if self.rusage is not None:
            return True
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None

    def terminate(self) -> None:
        """SIGTERM: a worker drains its active jobs and exits 0."""
        if self.rusage is None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        """Reap the process with os.wait4 (for its rusage); kill it after `timeout`."""
        if self.rusage is not None:
            return int(self.proc.returncode)
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
                if pid:
                    self.rusage = ru
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    return self.proc.returncode
                if time.monotonic() > deadline:
                    self.proc.kill()
                    _, status, ru = os.wait4(self.pid, 0)
                    self.rusage = ru
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    raise RuntimeError(f"{self.name} did not exit within {timeout:.0f} s{self.log_tail()}")
                time.sleep(0.02)
        finally:
            if self.rusage is not None:
                if self.reader is not None:
                    self.reader.join(5)
                self.log.close()

    def stop(self, timeout: float = 30) -> int:
        self.terminate()
        return self.wait(timeout)

    def kill(self) -> None:
        if self.rusage is None:
            with contextlib.suppress(ProcessLookupError):
                # The whole tree: a supervisor's children must not outlive a failed run.
                for child in descendants(self.pid):
                    os.kill(child, signal.SIGKILL)
                self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.wait(5)

    def peak_rss_mb(self) -> float:
        return float(self.rusage.ru_maxrss) / 1024 if self.rusage is not None else 0.0

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(ValueError):
            self.log.flush()
        try:
            text = self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""
        return f"\n--- {self.name} log tail ({self.log_path}) ---\n{text}" if text.strip() else ""
