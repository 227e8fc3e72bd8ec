"""What a running worker tells the outside: heartbeats, job logs, metrics and traces, /healthz."""
