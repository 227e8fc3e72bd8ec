"""A stand-in worker process for the supervisor tests (run as a script, never imported).

    python tests/supervisor_child.py RECORD --metrics-port PORT --base BASE --mode MODE [--crash-index I]

Its index is PORT - BASE (the supervisor gives child i port BASE+i). It appends one line per event
to the RECORD file: `start <index> <pid> <time>`, `term <index> <pid>`, `force <index> <pid>`.

Modes: `serve` drains for 0.2 s after a stop signal and exits 0; `slow-drain` drains for a minute,
and a second signal makes it exit 1 at once (what `twenty-jobs work` does); `crash` exits 3 soon
after starting; `crash-once` crashes only in the first process to start; `config` exits 2 (the
CLI's bad-configuration code); `hang` ignores stop signals. `--crash-index I` makes child I crash
whatever the mode.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

signals_seen = 0


def record(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def on_signal(signum: int, frame: object) -> None:
    global signals_seen
    signals_seen += 1


def first_to_crash(path: str) -> bool:
    try:
        os.close(os.open(path + ".crashed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("record")
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--base", type=int, required=True)
    parser.add_argument("--mode", default="serve")
    parser.add_argument("--crash-index", type=int, default=None)
    args = parser.parse_args()
    index, pid = args.metrics_port - args.base, os.getpid()
    record(args.record, f"start {index} {pid} {time.time():.3f}")
    mode = args.mode
    if args.crash_index == index or (mode == "crash-once" and first_to_crash(args.record)):
        mode = "crash"
    if mode == "crash":
        time.sleep(0.05)
        return 3
    if mode == "config":
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    while signals_seen == 0:
        time.sleep(0.01)
    if mode == "hang":
        record(args.record, f"term-ignored {index} {pid}")
        while True:
            time.sleep(1)
    record(args.record, f"term {index} {pid}")
    drain_until = time.monotonic() + (60 if mode == "slow-drain" else 0.2)
    while time.monotonic() < drain_until:
        if signals_seen > 1:
            record(args.record, f"force {index} {pid}")
            return 1
        time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
