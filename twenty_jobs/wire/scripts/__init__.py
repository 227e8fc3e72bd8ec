"""Every BullMQ Lua script twenty-jobs runs: one typed function per script that builds its keys
(from `wire.keys.QueueKeys`) and its arguments exactly as the script's header asks, runs it on a
`wire.lua.ScriptRunner`, and turns its negative error codes into `ScriptError`s.

* `worker`: what a worker runs per job (fetch, complete-and-fetch-next, fail, retry, delay, lock
  extension, stalled check, rate-limit TTL, progress, job logs, data) and the job-scheduler
  iteration it advances at fetch time;
* `queue`: adding jobs and queue control (counts, ranges, pause/resume, drain, obliterate,
  retry and clean of finished jobs);
* `schedulers`: job schedulers (create, remove, read) and the next-iteration arithmetic;
* `errors`: the scripts' error codes.

The argument layouts are written down in docs/bullmq-wire.md ("Lua scripts").
"""
