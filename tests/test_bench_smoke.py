"""`make bench` works end to end: each scenario's `--quick` path runs its workers on a private
Redis, does all of its work and reports Python/Node ratios; the webhook receiver counts deliveries,
connections and signatures; the report's ratios are per repetition. Timings are never asserted
(the machine is shared)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.report import Column, format_table, summarize

REPO = Path(__file__).resolve().parent.parent
PEERS_VENV = REPO / ".venv-peers"


def run_bench(tmp_path: Path, *args: str, timeout: float = 300) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["errors"] == []
    report["stdout"] = proc.stdout
    return report


def impls_of(runs: list[dict[str, Any]]) -> set[str]:
    return {r["impl"] for r in runs}


def test_quick_drain_runs_every_impl_to_the_last_job_and_reports_ratios(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "--scenarios", "drain", "--jobs", "300")
    drain = report["scenarios"]["drain"]
    assert impls_of(drain["runs"]) == {"node", "py", "py-info", "py-default"}
    for run in drain["runs"]:
        assert run["failed"] == 0, run
        assert 0 < run["jobs_in_window"] <= 300, run
        assert run["evalsha_per_job"] > 0, run
    ratios = drain["summary"]["c=10"]["ratios"]
    for label in ("py/node", "py-info/node", "py-default/node"):
        assert set(ratios[label]) >= {"throughput", "worker_cpu_ms_per_1k", "redis_cpu_ms_per_1k", "rss_mb"}
    assert {g["label"] for g in drain["goals"]} == {"py-default/node"}
    assert "py-default/node" in report["stdout"]


def test_quick_latency_measures_every_job_of_the_trickle(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "--scenarios", "latency", "--latency-seconds", "0.5")
    runs = report["scenarios"]["latency"]["runs"]
    assert impls_of(runs) == {"node", "py", "py-default"}
    for run in runs:
        assert run["jobs"] == 100 and run["failed"] == 0, run
        assert run["p50_ms"] <= run["p99_ms"] <= run["max_ms"], run


@pytest.mark.slow
def test_quick_webhook_delivers_every_signed_payload_on_both_sides(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "--scenarios", "webhook", "--webhook-jobs", "3")
    webhook = report["scenarios"]["webhook"]
    assert impls_of(webhook["runs"]) == {"node", "py-default", "py-guarded"}
    assert {r["concurrency"] for r in webhook["runs"]} == {1, 10}  # Twenty's webhook-queue value and 10x
    for run in webhook["runs"]:
        assert run["deliveries"] == run["deliveries_expected"] == 60, run
        assert (run["signed_bad"], run["unsigned"], run["failed"]) == (0, 0, 0), run
        assert run["connections"] >= 1, run
    assert "deliveries_per_s" in webhook["summary"]["c=1"]["ratios"]["py-default/node"]


@pytest.mark.slow
def test_quick_cpu_runs_node_and_one_and_two_python_processes(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "--scenarios", "cpu", "--cpu-jobs", "60")
    cpu = report["scenarios"]["cpu"]
    assert impls_of(cpu["runs"]) == {"node", "py-default", "py-default x2"}
    for run in cpu["runs"]:
        assert run["failed"] == 0, run
        # Each job spins 2 ms of CPU: the worker cannot have spent less.
        assert run["worker_cpu_ms_per_job"] >= 1.5, run
    two = next(r for r in cpu["runs"] if r["processes"] == 2)
    assert len(two["cpu_s_by_process"]) in (1, 2)  # one supervisor tree, or two separate processes
    assert "Python N>1" in report["stdout"]


def test_quick_memory_samples_rss_after_warmup_and_at_the_end(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "--scenarios", "memory", "--memory-jobs", "1500", "--memory-warmup", "500")
    memory = report["scenarios"]["memory"]
    assert impls_of(memory["runs"]) == {"node", "py-default"}
    for run in memory["runs"]:
        assert run["failed"] == 0
        assert run["rss_warm_mb"] > 10 and run["rss_end_mb"] > 10, run
        assert all(point["jobs_done"] >= 500 for point in run["rss_curve"]), run
    assert any(g["label"] == "py-default" and g["metric"] == "growth_pct" for g in memory["goals"])


@pytest.mark.skipif(not (PEERS_VENV / "bin" / "arq").exists(), reason="no .venv-peers (make bench PEERS=1 makes it)")
def test_quick_peers_drain_the_same_jobs_with_arq_and_saq(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "--scenarios", "peers", "--peers-jobs", "200")
    runs = report["scenarios"]["peers"]["runs"]
    assert impls_of(runs) == {"node", "py-default", "arq", "saq"}
    assert all(r["jobs_in_window"] > 0 for r in runs)


def test_unknown_scenario_is_one_line_and_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--scenarios", "drain,nope"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ratios_pair_each_python_run_with_the_node_run_of_its_repetition() -> None:
    runs = [
        {"impl": "node", "group": "c=1", "rep": 0, "x": 100.0},
        {"impl": "node", "group": "c=1", "rep": 1, "x": 200.0},
        {"impl": "py", "group": "c=1", "rep": 0, "x": 150.0},
        {"impl": "py", "group": "c=1", "rep": 1, "x": 200.0},
    ]
    summary = summarize(runs, ["x"])
    assert summary["c=1"]["impls"]["node"]["x"] == {"median": 150.0, "min": 100.0, "max": 200.0}
    assert summary["c=1"]["ratios"]["py/node"]["x"] == {"median": 1.25, "min": 1.0, "max": 1.5}
    table = format_table("t", summary, [Column("x", "x")], "c")
    assert "1.25x" in table and "1.00-1.50x" in table and "100-200" in table


def test_receiver_counts_deliveries_connections_and_checks_signatures() -> None:
    secret = "s3cret"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.receiver", "--delay-ms", "1", "--secret", secret],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        port = json.loads(proc.stdout.readline())["port"]
        body = b'{"eventName":"person.created"}'
        good = hmac.new(secret.encode(), b"1700000000000:" + body, hashlib.sha256).hexdigest()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # one keep-alive connection
            for signature in (good, good, "0" * 64):
                headers = {"X-Twenty-Webhook-Timestamp": "1700000000000", "X-Twenty-Webhook-Signature": signature}
                assert client.post("/hook", content=body, headers=headers).status_code == 200
            assert client.post("/hook", content=body).json() == {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # a second connection
            client.post("/hook", content=body)
        proc.stdin.write(b"stats\n")
        proc.stdin.flush()
        stats = json.loads(proc.stdout.readline())
        assert (stats["deliveries"], stats["connections"]) == (5, 2)
        assert (stats["signed_ok"], stats["signed_bad"], stats["unsigned"]) == (2, 1, 2)
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
