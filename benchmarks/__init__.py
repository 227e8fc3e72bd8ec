"""`make bench`: the Python worker against Twenty's Node bullmq 5.40.0 worker, side by side, in one run.

See benchmarks/run.py (the orchestrator), benchmarks/py_worker.py (the Python side) and
node_fixture/bin/bench-worker.js / bench-prefill.js (the Node side and the producer).
"""
