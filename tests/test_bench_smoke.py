"""`make bench` works end to end: a tiny `--quick` run drains the same queue with the Python and
the Node worker and reports Python/Node ratios. Timings are never asserted (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
JOBS = 300


@pytest.mark.slow
def test_quick_benchmark_drains_every_job_on_both_sides_and_reports_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--jobs", str(JOBS), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = report["runs"]
    assert {r["impl"] for r in runs} == {"node", "py", "py-info"}
    for run in runs:
        assert run["processed"] == JOBS, run
        assert run["left_in_queue"] == 0, run
    ratios = report["summary"]["10"]["ratios"]
    for label in ("py/node", "py-info/node"):
        assert set(ratios[label]) >= {"throughput", "worker_cpu_ms_per_1k", "redis_cpu_ms_per_1k", "rss_mb"}
    assert "py/node" in proc.stdout
