"""The job names the benchmark's producers write and its handlers serve (benchmarks/handlers.py,
benchmarks/py_worker.py, node_fixture/bin/bench-worker.js takes any name)."""

NOOP_JOB = "BenchNoopJob"
CPU_JOB = "BenchCpuJob"
# Twenty's webhook delivery job (docs/webhook-email.md), served by the built-in port.
WEBHOOK_JOB = "CallWebhookJob"
