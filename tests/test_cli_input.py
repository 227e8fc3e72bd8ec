"""Bad input on the command line (issue 9): through the real `python -m twenty_jobs.cli`, each case
is one line on stderr, a non-zero exit, and nothing written to Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from .conftest import REDIS_URL

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str | bytes, cwd: Path = REPO, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL}
    env.pop("REDIS_QUEUE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "twenty_jobs.cli", *args],
        input=stdin, capture_output=True, cwd=cwd, env=env, timeout=60,
    )


def assert_one_line_error(out: subprocess.CompletedProcess[bytes], *needles: str, code: int = 2) -> None:
    stderr = out.stderr.decode("utf-8", "replace")
    assert out.returncode == code, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("twenty-jobs: error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, stderr


DEEP = "[" * 10_000 + "]" * 10_000

BAD_ENQUEUE = [
    (["--delay", "1e30"], "'--delay'"),
    (["--delay", "9223372036854775807"], "'--delay'"),
    (["--retry-limit", "2^70"], "'--retry-limit'"),
    (["--retry-limit", str(2**70)], "'--retry-limit'"),
    (["--priority", str(2**21 + 1)], "'--priority'"),
    (["--backoff", "exponential:100:nan"], "--backoff jitter"),
    (["--backoff", "fixed:99999999999999999999"], "--backoff delay"),
    (["--data", DEEP], "nested more than 512 levels"),
    (["--data", '{"a": NaN}'], "NaN is not JSON"),
    (["--data", '{"a": "\\udc80"}'], "unpaired surrogate"),
    (["--prefix", "a b"], "--prefix: key prefix 'a b'"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_ENQUEUE, ids=lambda v: str(v)[:40])
async def test_bad_enqueue_input_is_one_line_and_writes_nothing(
    args: list[str], needle: str, prefix: str, redis: aioredis.Redis
) -> None:
    full = ["enqueue", "email-queue", "EmailSenderJob", "--prefix", prefix, *args]
    if "--prefix" in args:
        full = ["enqueue", "email-queue", "EmailSenderJob", *args]
    assert_one_line_error(run_cli(*full), needle)
    assert await redis.keys(f"{prefix}:*") == []


async def test_non_utf8_data_is_refused_from_argv_and_stdin(prefix: str, redis: aioredis.Redis) -> None:
    bad = b'{"name": "caf\xe9"}'  # Latin-1, not UTF-8
    assert_one_line_error(run_cli(b"enqueue", b"email-queue", b"X", b"--prefix", prefix.encode(), b"--data", bad),
                          "--data is not valid UTF-8")
    assert_one_line_error(run_cli("enqueue", "email-queue", "X", "--prefix", prefix, "--data", "-", stdin=bad),
                          "standard input is not valid UTF-8")
    assert await redis.keys(f"{prefix}:*") == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--log-level", "verbose"], "'--log-level'"),
        (["--log-format", "xml"], "'--log-format'"),
        (["--lock-duration-ms", "1e20"], "'--lock-duration-ms'"),
        (["--lock-duration-ms", str(10**20)], "'--lock-duration-ms'"),
        (["--concurrency", "100000"], "'--concurrency'"),
        (["--grace", "nan"], "'--grace'"),
        (["--prefix", "a b"], "--prefix: key prefix 'a b'"),
        (["--queue", "email:queue"], "contains ':'"),
        (["--no-such-option"], "No such option"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_work_input_is_one_line(args: list[str], needle: str) -> None:
    assert_one_line_error(run_cli("work", "--no-builtin-jobs", "--import", "tests.cli_handlers", *args), needle)


def test_a_handler_module_that_raises_config_error_on_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "twice.py").write_text(
        "import twenty_jobs\n"
        "@twenty_jobs.job(queue='workspace-queue', name='Same')\n"
        "async def a(data): pass\n"
        "@twenty_jobs.job(queue='workspace-queue', name='Same')\n"
        "async def b(data): pass\n"
    )
    assert_one_line_error(run_cli("work", "--no-builtin-jobs", "--import", "twice", cwd=tmp_path),
                          "two handlers for job 'Same'")


def test_an_unreachable_local_redis_says_how_to_start_one() -> None:
    out = run_cli("enqueue", "email-queue", "X", "--redis-url", "redis://127.0.0.1:1")
    assert_one_line_error(out, "cannot reach Redis at redis://127.0.0.1:1", "make services", code=1)
