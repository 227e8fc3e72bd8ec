"""Runs `run_supervisor` as its own process, so tests can signal it (run as a script).

    python tests/supervisor_driver.py --processes N [--grace S] [--margin S] [--backoff S]
        [--crash-limit N] [--crash-window S] -- CHILD ARGV...
"""

from __future__ import annotations

import argparse
import sys

from twenty_jobs.observability.logs import setup_logging
from twenty_jobs.runtime.supervisor import RestartPolicy, run_supervisor


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--margin", type=float, default=5.0)
    parser.add_argument("--backoff", type=float, default=0.1)
    parser.add_argument("--crash-limit", type=int, default=5)
    parser.add_argument("--crash-window", type=float, default=60.0)
    args = parser.parse_args(argv[:split])
    setup_logging("INFO")
    policy = RestartPolicy(
        initial_backoff_s=args.backoff, max_backoff_s=30.0, crash_limit=args.crash_limit,
        crash_window_s=args.crash_window,
    )
    return run_supervisor(
        args.processes, argv[split + 1 :], grace_s=args.grace, shutdown_margin_s=args.margin, policy=policy
    )


if __name__ == "__main__":
    sys.exit(main())
