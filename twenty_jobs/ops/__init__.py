"""Operations: read-only views of queues in Redis, failed-job and cron tools, and `doctor`.

The CLI commands in `twenty_jobs.cli` are thin wrappers over these modules; everything here
takes a redis.asyncio client and a key prefix, so the same code serves the CLI and the tests.
"""
