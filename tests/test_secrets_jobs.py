"""No PostgreSQL or SMTP password in the worker's output or in a failed job, whatever the form
(issue 9): the ported jobs run by the real `twenty-jobs work` against servers that are not there."""

from __future__ import annotations

import json
import uuid

import pytest
import redis.asyncio as aioredis

from .redis_servers import unreachable_port
from .test_connect_cli import SECRET, clean_env, cli, output

WEBHOOK_BATCH = {
    "name": "person.created",
    "workspaceId": str(uuid.uuid4()),
    "objectMetadata": {"id": str(uuid.uuid4()), "nameSingular": "person"},
    "events": [{"recordId": "r-1", "properties": {"after": {"id": "r-1"}}}],
}
MAIL = {"from": "noreply@example.com", "to": "someone@example.com", "subject": "hi", "text": "body"}


def pg_forms(port: int) -> list[str]:
    return [
        f"postgres://twenty:{SECRET}@127.0.0.1:{port}/default",
        f"postgresql://twenty@127.0.0.1:{port}/default?password={SECRET}",
        f"postgres://twenty:pa#{SECRET}@127.0.0.1:{port}/default",
        f"postgres://twenty:pa/{SECRET}@127.0.0.1:{port}/default",
        f"postgres://twenty:pa?{SECRET}@127.0.0.1:{port}/default",
        f"postgres://{SECRET}@127.0.0.1:{port}/default",
    ]


async def run_one_job(prefix: str, queue: str, name: str, data: object, env: dict[str, str],
                      redis: aioredis.Redis, workdir: object) -> str:
    """Enqueue one job with no retries, work the queue until idle; everything the worker said
    and stored about the job, as one text."""
    common = ["--prefix", prefix]
    added = cli(["enqueue", queue, name, "--data", json.dumps(data), "--retry-limit", "0", *common], env, workdir)
    assert added.returncode == 0, added.stderr
    worked = cli(["work", "--burst", "--queue", queue, *common], env, workdir)
    assert worked.returncode == 0, output(worked)
    job = await redis.hgetall(f"{prefix}:{queue}:{added.stdout.strip()}")
    assert job.get("failedReason"), job  # the job did fail (nothing answered), so a message exists
    return output(worked) + json.dumps(job)


@pytest.mark.parametrize("form", range(len(pg_forms(1))))
async def test_no_postgres_password_in_the_worker_output_or_the_failed_job(
    form: int, prefix: str, redis: aioredis.Redis, tmp_path: object
) -> None:
    env = clean_env(REDIS_URL="redis://127.0.0.1:6379", PG_DATABASE_URL=pg_forms(unreachable_port())[form])
    said = await run_one_job(prefix, "webhook-queue", "CallWebhookJobsJob", WEBHOOK_BATCH, env, redis, tmp_path)
    assert "PG_DATABASE_URL" in said and SECRET not in said


async def test_no_smtp_password_in_the_worker_output_or_the_failed_job(
    prefix: str, redis: aioredis.Redis, tmp_path: object
) -> None:
    env = clean_env(REDIS_URL="redis://127.0.0.1:6379", EMAIL_DRIVER="smtp", EMAIL_SMTP_HOST="127.0.0.1",
                    EMAIL_SMTP_PORT=str(unreachable_port()), EMAIL_SMTP_USER="mailer", EMAIL_SMTP_PASSWORD=SECRET)
    said = await run_one_job(prefix, "email-queue", "EmailSenderJob", MAIL, env, redis, tmp_path)
    assert "EMAIL_SMTP_HOST" in said and SECRET not in said
