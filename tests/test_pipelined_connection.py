"""The worker's pipelined command connection (twenty_jobs/connection/pipelined.py) on real Redis
servers: replies matched to concurrent commands, invalid UTF-8 in replies, replies lost to a
killed connection (re-sent only when safe), reconnects, AUTH/SELECT/CLIENT SETNAME, Unix sockets
and TLS. Kills, busy scripts and restarts run on private redis-servers, never on the shared one."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from twenty_jobs.connection.client import make_command_connection
from twenty_jobs.connection.pipelined import PipelinedConnection, tcp_opener, unix_opener
from twenty_jobs.connection.protocol import ReplyLostError
from twenty_jobs.wire.lua import LuaScript

from .conftest import REDIS_URL

SHARED = aioredis.connection.parse_url(REDIS_URL)


def shared_opener() -> Any:
    return tcp_opener(SHARED.get("host", "127.0.0.1"), SHARED.get("port", 6379))


def lua(name: str, text: str, keys: int) -> LuaScript:
    import hashlib

    return LuaScript(name, keys, text, hashlib.sha1(text.encode()).hexdigest())


# Busy for ~200 ms, counts its runs in KEYS[1], then answers with ARGV[1] megabytes: Redis writes a
# big reply over several event-loop turns, so a CLIENT KILL queued during the busy loop lands
# before the reply is out. That is a reply lost after the script ran.
SLOW_SCRIPT = lua(
    "slow",
    """
    local t = redis.call('TIME')
    local start = t[1] * 1000000 + t[2]
    repeat
      local n = redis.call('TIME')
    until n[1] * 1000000 + n[2] - start > 200000
    redis.call('INCR', KEYS[1])
    return string.rep('x', tonumber(ARGV[1]) * 1048576)
    """,
    1,
)
HASH_OF = lua("hashOf", "return redis.call('HGETALL', KEYS[1])", 1)


class PrivateRedis:
    """A redis-server of the test's own (stopped by pid), with extra config arguments."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (make test installs it)"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def opener(self) -> Any:
        return tcp_opener("127.0.0.1", self.port)

    def client(self, **kw: Any) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=self.port, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def shared_conn() -> AsyncIterator[PipelinedConnection]:
    conn = PipelinedConnection(shared_opener(), what="test")
    yield conn
    await conn.aclose()


async def wait_for(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_concurrent_commands_get_their_own_replies(shared_conn: PipelinedConnection, prefix: str) -> None:
    conn = shared_conn
    await asyncio.gather(*(conn.call("HSET", f"{prefix}:h{i}", "i", i, "x", "y") for i in range(200)))
    got = await asyncio.gather(*(conn.call("HGETALL", f"{prefix}:h{i}") for i in range(200)))
    assert got == [["i", str(i), "x", "y"] for i in range(200)]
    # A cancelled caller does not shift the replies of the others.
    cancelled = asyncio.ensure_future(conn.call("GET", f"{prefix}:missing"))
    cancelled.cancel()
    assert await conn.call("HGET", f"{prefix}:h7", "i") == "7"
    # An error reply is that command's error only.
    results = await asyncio.gather(
        conn.call("GET", f"{prefix}:missing"), conn.call("NO-SUCH-COMMAND"), conn.call("PING"),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], ResponseError) and results[2] == "PONG"
    assert await conn.run_script(HASH_OF, [f"{prefix}:h3"], [], idempotent=True) == ["i", "3", "x", "y"]


BAD = b"\xff\xfe-\xc3("  # not UTF-8 in three ways: invalid start bytes and a truncated sequence


async def test_invalid_utf8_in_any_job_hash_field_disturbs_no_other_reply(
    shared_conn: PipelinedConnection, redis: aioredis.Redis, prefix: str
) -> None:
    conn = shared_conn
    raw = aioredis.Redis.from_url(REDIS_URL)  # bytes in, bytes out
    try:
        # Invalid UTF-8 in every field a Node app (or a hand edit) may write, and in a field name.
        fields = {b"name": b"Job" + BAD, b"data": b'{"x":"' + BAD + b'"}', b"opts": b'{"attempts":1' + BAD,
                  b"timestamp": b"17" + BAD, b"failedReason": BAD, b"id" + BAD: b"v"}
        key = f"{prefix}:job:1"
        await raw.hset(key, mapping=fields)  # type: ignore[arg-type,misc]
        await asyncio.gather(*(redis.set(f"{prefix}:k{i}", f"v{i}") for i in range(100)))
        client_id = await conn.call("CLIENT", "ID")
        expected = {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
                    for k, v in fields.items()}

        others = [conn.call("GET", f"{prefix}:k{i}") for i in range(50)]
        bad = [conn.call("HGETALL", key), conn.run_script(HASH_OF, [key], [], idempotent=True)]
        more = [conn.call("GET", f"{prefix}:k{i}") for i in range(50, 100)]
        replies = await asyncio.gather(*others, *bad, *more)

        assert replies[:50] == [f"v{i}" for i in range(50)]
        assert replies[52:] == [f"v{i}" for i in range(50, 100)]
        for flat in replies[50:52]:
            it = iter(flat)
            assert dict(zip(it, it, strict=True)) == expected
        # Still the same socket: nothing was dropped.
        assert await conn.call("CLIENT", "ID") == client_id
        # Sent back as arguments, the decoded strings are the original bytes again.
        await conn.call("HSET", f"{prefix}:copy", *[x for pair in expected.items() for x in pair])
        assert await raw.hgetall(f"{prefix}:copy") == fields  # type: ignore[misc]
    finally:
        await raw.aclose()


async def _kill_during_slow_script(server: PrivateRedis, conn: PipelinedConnection, *calls: Any) -> list[Any]:
    """Start `calls` (awaitables on `conn`, the first a SLOW_SCRIPT), kill `conn`'s socket from
    another client while the script runs, and return their outcomes."""
    await conn.call("SCRIPT", "LOAD", SLOW_SCRIPT.text)  # so the first EVALSHA is the slow one
    victim = await conn.call("CLIENT", "ID")
    killer = server.client()
    try:
        await killer.ping()  # connected beforehand: only the kill waits behind the busy script
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.05)  # the script is busy now; the kill runs right after it
        await killer.execute_command("CLIENT", "KILL", "ID", victim)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    finally:
        await killer.aclose()
    assert await conn.call("CLIENT", "ID") != victim  # a new socket
    return results


async def test_a_lost_reply_fails_a_script_that_is_not_idempotent_and_it_is_not_sent_again(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="twenty_jobs.redis")
    conn = PipelinedConnection(private_redis.opener(), what="kill test")
    try:
        for _ in range(5):
            await conn.call("DEL", "runs")
            await conn.call("SET", "value", "before")
            outcome, after_read, after_write = await _kill_during_slow_script(
                private_redis, conn,
                conn.run_script(SLOW_SCRIPT, ["runs"], [16], idempotent=False),
                conn.call("GET", "value"),  # a read written behind it: sent again
                conn.call("SET", "value", "after"),  # a write written behind it: it ran, its reply is lost
            )
            if not isinstance(outcome, str):
                break
            # On a loaded machine the kill can arrive after the whole reply was read: no reply was
            # lost, so there is nothing to test in this round; try again.
        assert isinstance(outcome, ReplyLostError)
        # The SET may or may not have run before the kill (that is what ReplyLostError says); the
        # GET, sent again, reads whatever is there now.
        assert isinstance(after_write, ReplyLostError)
        assert after_read == await conn.call("GET", "value")
        assert await conn.call("GET", "runs") == "1"  # the script ran once and was not sent again
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "Redis connection lost (kill test)" in messages
        assert "2 failed with their reply lost" in messages
        assert "restored (kill test)" in messages
    finally:
        await conn.aclose()


async def test_a_lost_reply_of_an_idempotent_script_is_fetched_by_sending_it_again(
    private_redis: PrivateRedis,
) -> None:
    conn = PipelinedConnection(private_redis.opener(), what="kill test")
    try:
        [outcome] = await _kill_during_slow_script(
            private_redis, conn, conn.run_script(SLOW_SCRIPT, ["runs"], [16], idempotent=True)
        )
        assert isinstance(outcome, str) and len(outcome) == 16 * 1048576
        # The lost run, then the one that answered; on a loaded machine the kill may also land
        # before the first send ran the script, and then only the second one ran.
        assert await conn.call("GET", "runs") in ("1", "2")
    finally:
        await conn.aclose()


async def test_commands_issued_while_redis_is_down_are_sent_after_it_is_back(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="twenty_jobs.redis")
    conn = PipelinedConnection(private_redis.opener(), what="restart test")
    try:
        await conn.run_script(HASH_OF, ["h"], [], idempotent=True)
        private_redis.stop()
        await wait_for(lambda: not conn.connected)
        pending = [asyncio.ensure_future(conn.call("INCR", "n")),
                   asyncio.ensure_future(conn.run_script(HASH_OF, ["h"], [], idempotent=False))]
        await asyncio.sleep(0.5)  # a few failed reconnects
        assert not any(t.done() for t in pending)
        private_redis.start()  # scripts are gone: NOSCRIPT, SCRIPT LOAD and again
        assert await asyncio.wait_for(asyncio.gather(*pending), 15) == [1, []]
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "Redis connection lost (restart test)" in messages
        assert "Redis connection restored (restart test) after" in messages
    finally:
        await conn.aclose()


async def test_the_first_connection_waits_for_redis_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="twenty_jobs.redis")
    server = PrivateRedis(tmp_path)
    conn = PipelinedConnection(server.opener(), what="late start")
    try:
        first = asyncio.ensure_future(conn.call("PING"))
        await asyncio.sleep(0.3)
        assert not first.done()
        server.start()
        assert await asyncio.wait_for(first, 15) == "PONG"
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "cannot reach Redis (late start)" in messages
        assert "restored (late start)" in messages
    finally:
        await conn.aclose()
        server.stop()


async def test_auth_select_and_client_name_are_applied_on_every_connect(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, "--requirepass", "s3cret", "--user", "alice", "on", ">alice-pw", "~*", "&*",
                          "+@all")
    server.start()
    admin = server.client(password="s3cret", decode_responses=True)
    by_password = PipelinedConnection(server.opener(), password="s3cret", db=3, client_name="tj-test-a")
    by_user = PipelinedConnection(server.opener(), username="alice", password="alice-pw", client_name="tj-test-b")
    try:
        await by_password.call("SET", "where", "db3")
        assert await admin.execute_command("SELECT", 3) and await admin.get("where") == "db3"
        assert await by_user.call("ACL", "WHOAMI") == "alice"
        first_id = await by_password.call("CLIENT", "ID")
        await admin.execute_command("CLIENT", "KILL", "ID", first_id)
        # After the reconnect (a read is sent again if the dead socket took it): authenticated
        # again, db 3 again, named again.
        assert await by_password.call("GET", "where") == "db3"
        assert await by_password.call("CLIENT", "ID") != first_id
        assert await by_password.call("CLIENT", "GETNAME") == "tj-test-a"
        names = [c["name"] for c in await admin.client_list()]
        assert "tj-test-a" in names and "tj-test-b" in names
    finally:
        await by_password.aclose()
        await by_user.aclose()
        await admin.aclose()
        server.stop()


async def test_a_refused_handshake_fails_the_commands_instead_of_retrying(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, "--requirepass", "s3cret")
    server.start()
    conn = PipelinedConnection(server.opener(), password="wrong")
    try:
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(conn.connect(), 10)
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(conn.call("PING"), 10)
    finally:
        await conn.aclose()
        server.stop()


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = PrivateRedis(tmp_path, "--unixsocket", str(path))
    server.start()
    conn = PipelinedConnection(unix_opener(str(path)))
    try:
        assert await conn.call("PING") == "PONG"
        assert str(path) in await conn.call("CLIENT", "INFO")
    finally:
        await conn.aclose()
        server.stop()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


async def test_tls(tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    tls_port = _free_port()
    server = PrivateRedis(tmp_path, "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file",
                          str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    server.start()
    trusting = ssl.create_default_context(cafile=str(cert))
    conn = PipelinedConnection(tcp_opener("localhost", tls_port, ssl=trusting))
    try:
        assert await asyncio.wait_for(conn.call("PING"), 10) == "PONG"
        assert await conn.call("SET", "k", "é") == "OK" and await conn.call("GET", "k") == "é"
    finally:
        await conn.aclose()
        server.stop()


async def test_a_closed_connection_refuses_commands(shared_conn: PipelinedConnection) -> None:
    assert await shared_conn.call("PING") == "PONG"
    await shared_conn.aclose()
    with pytest.raises(RedisConnectionError):
        await shared_conn.call("PING")


def test_the_same_on_uvloop(
    tmp_path: Path, self_signed: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """`twenty-jobs work` runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        scenarios: dict[str, Callable[[PrivateRedis], Coroutine[Any, Any, None]]] = {
            "lost": lambda server: test_a_lost_reply_fails_a_script_that_is_not_idempotent_and_it_is_not_sent_again(
                server, caplog),
            "resent": test_a_lost_reply_of_an_idempotent_script_is_fetched_by_sending_it_again,
            "restart": lambda server: test_commands_issued_while_redis_is_down_are_sent_after_it_is_back(
                server, caplog),
        }
        for name, scenario in scenarios.items():
            (tmp_path / name).mkdir()
            server = PrivateRedis(tmp_path / name)
            server.start()
            try:
                runner.run(scenario(server))
            finally:
                server.stop()
        (tmp_path / "unix").mkdir()
        runner.run(test_unix_socket(tmp_path / "unix"))
        runner.run(test_tls(tmp_path, self_signed))


async def test_the_worker_builds_it_from_a_redis_url(tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    tls_port = _free_port()
    path = tmp_path / "redis.sock"
    server = PrivateRedis(tmp_path, "--requirepass", "p#w", "--unixsocket", str(path), "--tls-port", str(tls_port),
                          "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                          "--tls-auth-clients", "no")
    server.start()
    admin = server.client(password="p#w", db=2, decode_responses=True)
    urls = [f"unix://{path}?db=2&password=p%23w", f"rediss://:p%23w@localhost:{tls_port}/2?ssl_ca_certs={cert}",
            f"rediss://:p%23w@127.0.0.1:{tls_port}/2?ssl_cert_reqs=none"]
    try:
        for url in urls:
            conn = make_command_connection(url, what="url test", client_name="tj-url-test")
            try:
                await asyncio.wait_for(conn.call("SET", "from", url), 10)
                assert await admin.get("from") == url
                assert await conn.call("CLIENT", "GETNAME") == "tj-url-test"
            finally:
                await conn.aclose()
    finally:
        await admin.aclose()
        server.stop()
