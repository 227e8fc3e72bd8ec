"""Where the real CLI connects, and what it says: REDIS_HOST/REDIS_PORT, unix sockets, bad
connection input (one line, non-zero exit, no traceback), and no password in any output,
whatever the URL form (issues 9 and 11)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from twenty_jobs.connection.client import make_command_connection
from twenty_jobs.connection.env import REDIS_VARS
from twenty_jobs.connection.url import parse_redis_url

from .redis_servers import RedisProcess, processes, start_plain, unreachable_port  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parent.parent
SECRET = "Zq9-s3cret"
# Commands that connect to Redis, run with no queue work to do.
CONNECTING_COMMANDS: list[list[str]] = [
    ["status"],
    ["check"],
    ["doctor"],
    ["enqueue", "email-queue", "EmailSenderJob", "--data", "{}"],
    ["work", "--burst", "--no-builtin-jobs", "--import", "tests.cli_handlers"],
]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REDIS_VARS and not k.startswith(("TWENTY_JOBS_", "EMAIL_"))}
    env.pop("PG_DATABASE_URL", None)
    return {**env, "PYTHONPATH": str(REPO), **extra}


def cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twenty_jobs.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )


def cli_many(runs: list[tuple[Sequence[str], dict[str, str]]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run several CLI invocations side by side (each is a fresh Python process)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda run: cli(run[0], run[1], cwd), runs))


def queue_row(status_json: str, queue: str) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {row["name"]: row for row in json.loads(status_json)["queues"]}
    return rows[queue]


def output(out: subprocess.CompletedProcess[str]) -> str:
    return out.stdout + out.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The CLI's working directory: empty, so no stray `.env` is read."""
    return tmp_path


@pytest.fixture
def prefix_name() -> Iterator[str]:
    yield f"tj-conn-{uuid.uuid4().hex[:10]}"


# -- REDIS_HOST / REDIS_PORT ---------------------------------------------------------------------


def test_enqueue_with_only_redis_host_and_port_goes_to_that_redis(
    processes: list[RedisProcess], workdir: Path, prefix_name: str  # noqa: F811
) -> None:
    server, port = start_plain(workdir, "hostport", password=SECRET)
    processes.append(server)
    env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port), REDIS_PASSWORD=SECRET)
    out = cli(["enqueue", "email-queue", "EmailSenderJob", "--data", "{}", "--prefix", prefix_name], env, workdir)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    there = redis.Redis(port=port, password=SECRET, decode_responses=True)
    shared = redis.Redis(port=6379, decode_responses=True)
    try:
        assert there.hget(f"{prefix_name}:email-queue:{job_id}", "name") == "EmailSenderJob"
        # Before: the job went to 127.0.0.1:6379, silently.
        assert shared.exists(f"{prefix_name}:email-queue:{job_id}") == 0
    finally:
        there.close()
        shared.close()
    status = cli(["status", "--json", "--prefix", prefix_name], env, workdir)
    assert status.returncode == 0, status.stderr
    row = queue_row(status.stdout, "email-queue")
    assert row["waiting"] + row["prioritized"] == 1


def test_variables_that_are_set_but_not_used_are_reported_on_stderr(workdir: Path) -> None:
    env = clean_env(REDIS_URL=f"redis://127.0.0.1:{unreachable_port()}", REDIS_HOST="elsewhere",
                    REDIS_TLS_CA="/etc/ssl/certs/ca-certificates.crt")
    out = cli(["status"], env, workdir)
    lines = out.stderr.splitlines()
    assert "twenty-jobs: warning: REDIS_HOST is set but not used: REDIS_URL takes precedence" in lines
    assert any(line.startswith("twenty-jobs: warning: REDIS_TLS_CA is set but not used") for line in lines)
    assert out.returncode == 1 and "Traceback" not in out.stderr


# -- unix sockets --------------------------------------------------------------------------------


def test_every_command_works_through_a_unix_socket(
    processes: list[RedisProcess], workdir: Path, prefix_name: str  # noqa: F811
) -> None:
    sock = workdir / "redis.sock"
    server = RedisProcess("unix", workdir, ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                                            "--save", "", "--appendonly", "no", "--dir", str(workdir),
                                            "--requirepass", SECRET],
                          lambda: redis.Redis(unix_socket_path=str(sock), password=SECRET).ping())
    processes.append(server.start())
    url = f"unix://:{SECRET}@{sock}?db=2"
    env = clean_env(REDIS_URL=url)
    common = ["--prefix", prefix_name]
    added = cli(["enqueue", "workspace-queue", "Echo", "--data", '{"x": 1}', *common], env, workdir)
    assert added.returncode == 0, added.stderr
    worked = cli(["work", "--burst", "--no-builtin-jobs", "--import", "tests.cli_handlers",
                  "--queue", "workspace-queue", *common], env, workdir)
    assert worked.returncode == 0, worked.stderr
    status = cli(["status", "--json", *common], env, workdir)
    check = cli(["check", *common], env, workdir)
    assert status.returncode == 0, status.stderr
    assert queue_row(status.stdout, "workspace-queue")["completed"] == 1
    assert check.returncode in (0, 1) and "cannot reach" not in check.stdout
    client = redis.Redis(unix_socket_path=str(sock), password=SECRET, db=2)
    try:
        assert client.zcard(f"{prefix_name}:workspace-queue:completed") == 1
    finally:
        client.close()
    assert all(SECRET not in output(o) for o in (added, worked, status, check))


# -- bad input -----------------------------------------------------------------------------------


BAD_INPUT: list[tuple[list[str], dict[str, str], str]] = [
    (["--redis-url", "redis://127.0.0.1:abc"], {}, "--redis-url"),
    (["--redis-url", "redis://127.0.0.1:99999"], {}, "--redis-url"),
    (["--redis-url", "redis://127.0.0.1/0?db=x"], {}, "db in the Redis URL must be a whole number"),
    (["--redis-url", "redis://127.0.0.1?socket_timeout=abc"], {}, "socket_timeout"),
    (["--redis-url", "unix://relative/redis.sock"], {}, "unix:///path/to/redis.sock"),
    ([], {"REDIS_URL": "unix://"}, "REDIS_URL"),
    ([], {"REDIS_PORT": "abc"}, "REDIS_PORT: the port must be a number"),
    ([], {"REDIS_PORT": "99999"}, "REDIS_PORT: the port must be a number"),
    ([], {"REDIS_TLS": "1", "REDIS_TLS_CA": "/nonexistent/ca.pem"}, "does not exist"),
    (["--prefix", "tab\there"], {}, "--prefix: key prefix"),
    ([], {"TWENTY_JOBS_PREFIX": "a b"}, "TWENTY_JOBS_PREFIX: key prefix"),
    ([], {"REDIS_CLUSTER_NODES": "127.0.0.1:7000"}, "has no hash tag"),
]


def assert_refused(out: subprocess.CompletedProcess[str], said: str) -> None:
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("twenty-jobs: error: "), out.stderr
    assert said in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("extra_args", "env_vars", "said"), BAD_INPUT)
def test_bad_connection_input_is_one_line_and_exit_2(
    extra_args: list[str], env_vars: dict[str, str], said: str, workdir: Path
) -> None:
    assert_refused(cli(["status", *extra_args], clean_env(**env_vars), workdir), said)


@pytest.mark.parametrize("bad", [["--prefix", "a b"], ["--redis-url", "redis://127.0.0.1:abc"]])
def test_every_command_refuses_bad_connection_input_at_validation(bad: list[str], workdir: Path) -> None:
    """Settings are checked by every command the same way: `enqueue` no longer takes a prefix
    that `work` then dies on (CLIENT SETNAME refuses spaces)."""
    results = cli_many([([*command, *bad], clean_env()) for command in CONNECTING_COMMANDS], workdir)
    for out in results:
        assert_refused(out, bad[0])


def test_unreachable_redis_says_how_to_start_one(workdir: Path) -> None:
    env = clean_env(REDIS_URL=f"redis://127.0.0.1:{unreachable_port()}")
    out = cli(["enqueue", "email-queue", "EmailSenderJob"], env, workdir)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "make services" in out.stderr and "redis-server --daemonize yes" in out.stderr
    assert "REDIS_URL" in out.stderr


# -- secrets -------------------------------------------------------------------------------------


def secret_forms(port: int) -> list[dict[str, str]]:
    """Every way a password reaches twenty-jobs, pointing at a port where nothing listens."""
    return [
        {"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{port}"},
        {"REDIS_URL": f"redis://127.0.0.1:{port}/0?password={SECRET}"},
        {"REDIS_URL": f"redis://:pa#{SECRET}@127.0.0.1:{port}"},
        {"REDIS_URL": f"redis://:pa/{SECRET}@127.0.0.1:{port}"},
        {"REDIS_URL": f"redis://:pa?{SECRET}@127.0.0.1:{port}"},
        {"REDIS_URL": f"redis://{SECRET}@127.0.0.1:{port}"},
        {"REDIS_URL": f"rediss://user:{SECRET}@127.0.0.1:{port}"},
        {"REDIS_QUEUE_URL": f"redis://u:{SECRET}@127.0.0.1:{port}/1", "REDIS_URL": f"redis://:{SECRET}@other:1"},
        {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "REDIS_PASSWORD": SECRET},
        {"REDIS_SENTINELS": f"127.0.0.1:{port}", "REDIS_SENTINEL_NAME": "mymaster",
         "REDIS_SENTINEL_PASSWORD": SECRET, "REDIS_PASSWORD": SECRET},
        {"REDIS_URL": f"redis+sentinel://:{SECRET}@127.0.0.1:{port}/mymaster?sentinel_password={SECRET}"},
    ]


@pytest.mark.parametrize("form", range(len(secret_forms(1))))
def test_no_command_prints_the_redis_password_whatever_the_form(form: int, workdir: Path) -> None:
    env = clean_env(**secret_forms(unreachable_port())[form])
    results = cli_many([(command, env) for command in CONNECTING_COMMANDS], workdir)
    for command, out in zip(CONNECTING_COMMANDS, results, strict=True):
        assert out.returncode != 0, (command, output(out))
        assert SECRET not in output(out), (command, output(out))
        assert "Traceback" not in output(out), (command, output(out))


def test_no_command_prints_a_password_given_on_the_command_line(workdir: Path) -> None:
    url = f"redis://:pa/{SECRET}@127.0.0.1:{unreachable_port()}"
    results = cli_many([([*command, "--redis-url", url], clean_env()) for command in CONNECTING_COMMANDS], workdir)
    assert all(SECRET not in output(out) and out.returncode == 2 for out in results)


# -- every command, for the Sentinel and Cluster tests --------------------------------------------


def every_command_works(env: dict[str, str], workdir: Path, prefix: str) -> list[str]:
    """enqueue, work, status, failed list/retry, check, doctor, pause/resume and cron list through
    the connection `env` describes; returns everything they printed."""
    queue = "tj-conn"
    common = ["--prefix", prefix]
    custom = ["--custom-queue", *common]
    said: list[str] = []

    def run(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        out = cli(list(args), env, workdir)
        said.append(output(out))
        assert out.returncode in ok, (args, output(out))
        assert "cannot reach" not in output(out) and "Traceback" not in output(out), (args, output(out))
        return out

    run("enqueue", queue, "Echo", "--data", '{"x": 1}', *custom)
    failing = run("enqueue", queue, "Fail", *custom).stdout.strip()
    run("work", "--burst", "--queue", queue, "--no-builtin-jobs", "--import", "tests.connection_handlers", *common)
    row = queue_row(run("status", "--json", "--queue", queue, *custom).stdout, queue)
    assert (row["completed"], row["failed"]) == (1, 1), row
    assert failing in run("failed", "list", queue, *custom).stdout
    run("failed", "retry", queue, "--id", failing, *custom)
    row = queue_row(run("status", "--json", "--queue", queue, *custom).stdout, queue)
    assert (row["failed"], row["waiting"]) == (0, 1), row
    run("check", *common, ok=(0, 1))
    run("doctor", *common, ok=(0, 1))
    run("pause", "workspace-queue", *common)
    run("resume", "workspace-queue", *common)
    run("cron", "list", *common)
    return said


# -- raw streams for the pipelined connection ----------------------------------------------------


def test_the_command_connection_over_tcp_and_over_a_unix_socket_with_a_password(
    processes: list[RedisProcess], workdir: Path  # noqa: F811
) -> None:
    sock = workdir / "raw.sock"
    server = RedisProcess("raw-unix", workdir, ["--port", "0", "--unixsocket", str(sock), "--save", "",
                                                "--appendonly", "no", "--dir", str(workdir), "--requirepass", SECRET],
                          lambda: redis.Redis(unix_socket_path=str(sock), password=SECRET).ping())
    processes.append(server.start())

    async def ping(url: str) -> object:
        connection = make_command_connection(url, what="test")
        try:
            return await connection.call("PING")
        finally:
            await connection.aclose()

    assert asyncio.run(ping("redis://127.0.0.1:6379")) == "PONG"
    assert asyncio.run(ping(f"unix://:{SECRET}@{sock}?db=1")) == "PONG"
    with pytest.raises(OSError):
        asyncio.run(parse_redis_url(f"redis://127.0.0.1:{unreachable_port()}").target().open_transport(asyncio.Protocol))
