"""Operations: read-only queries and verdicts on the queues in Redis (`check`, `status`,
`doctor`, orphaned jobs), one findings model for them, and queue control (stats, pause, resume,
drain, clean, obliterate, `repair`), failed jobs and crons.

The CLI commands in `twenty_jobs.cli` are thin wrappers over these modules; everything here
takes a redis.asyncio client and a key prefix, so the same code serves the CLI and the tests.
"""
