"""TLS to Redis against a real TLS redis-server (certificates made with openssl per test module):
rediss:// with a CA file, client certificates (tls-auth-clients yes) from the environment, the
verification modes, and a wrong CA as one clear line (issue 11, item 3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from twenty_jobs.connection.client import make_client, make_command_connection, ping_or_raise
from twenty_jobs.connection.url import parse_redis_url
from twenty_jobs.errors import RedisUnavailableError

from .redis_servers import Certs, make_certs, start_tls
from .test_connect_cli import SECRET, clean_env, cli, output, queue_row

HANDLERS = ["--no-builtin-jobs", "--import", "tests.cli_handlers"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_port(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A TLS-only server with a password; clients need no certificate."""
    server, port = start_tls(tmp_path_factory.mktemp("tls"), certs, auth_clients=False, password=SECRET)
    yield port
    server.stop()


@pytest.fixture(scope="module")
def mtls_port(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A TLS-only server that requires a client certificate signed by the CA."""
    server, port = start_tls(tmp_path_factory.mktemp("mtls"), certs, auth_clients=True)
    yield port
    server.stop()


def enqueue_work_status(env: dict[str, str], workdir: Path, prefix_name: str) -> list[str]:
    """One job through enqueue, work and status; returns everything the commands printed."""
    prefix = ["--prefix", prefix_name]
    added = cli(["enqueue", "workspace-queue", "Echo", "--data", '{"tls": true}', *prefix], env, workdir)
    assert added.returncode == 0, added.stderr
    worked = cli(["work", "--burst", "--queue", "workspace-queue", *HANDLERS, *prefix], env, workdir)
    assert worked.returncode == 0, output(worked)
    status = cli(["status", "--json", *prefix], env, workdir)
    assert status.returncode == 0, status.stderr
    assert queue_row(status.stdout, "workspace-queue")["completed"] == 1
    return [output(added), output(worked), output(status)]


def test_enqueue_work_and_status_through_rediss_with_a_ca_file(certs: Certs, tls_port: int, tmp_path: Path) -> None:
    env = clean_env(REDIS_URL=f"rediss://:{SECRET}@127.0.0.1:{tls_port}?ssl_ca_certs={certs.ca}")
    said = enqueue_work_status(env, tmp_path, "tj-tls")
    assert all(SECRET not in text for text in said)


def test_client_certificate_and_key_from_the_environment(certs: Certs, mtls_port: int, tmp_path: Path) -> None:
    env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(mtls_port), REDIS_TLS="true", REDIS_TLS_CA=str(certs.ca),
                    REDIS_TLS_CERT=str(certs.client_cert), REDIS_TLS_KEY=str(certs.client_key))
    enqueue_work_status(env, tmp_path, "tj-mtls")
    client = redis.Redis(port=mtls_port, ssl=True, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                         ssl_keyfile=str(certs.client_key), decode_responses=True)
    try:
        assert client.zcard("tj-mtls:workspace-queue:completed") == 1  # on the TLS server, not elsewhere
    finally:
        client.close()
    # Without the client certificate the server hangs up during the handshake: one line, exit 1.
    no_cert = {k: v for k, v in env.items() if k not in ("REDIS_TLS_CERT", "REDIS_TLS_KEY")}
    out = cli(["status"], no_cert, tmp_path)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot reach Redis" in out.stderr


@pytest.mark.parametrize("command", [["status"], ["enqueue", "workspace-queue", "Echo"],
                                     ["work", "--burst", *HANDLERS]])
def test_a_wrong_ca_is_one_clear_line_and_exit_1(command: list[str], certs: Certs, tls_port: int,
                                                 tmp_path: Path) -> None:
    env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(tls_port), REDIS_PASSWORD=SECRET, REDIS_TLS="yes",
                    REDIS_TLS_CA=str(certs.other_ca))
    out = cli(command, env, tmp_path)
    errors = [line for line in out.stderr.splitlines() if line.startswith("twenty-jobs: error:")]
    assert out.returncode == 1 and len(errors) == 1, out.stderr
    assert "TLS certificate is not trusted" in errors[0] and "REDIS_TLS_CA" in errors[0]
    assert "make services" not in errors[0]  # starting a Redis is not the fix
    assert "Traceback" not in out.stderr and SECRET not in out.stderr


@pytest.fixture(scope="module")
def misnamed_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Certs]]:
    """A TLS server whose certificate names only `redis.test`, not the 127.0.0.1 we dial."""
    certs = make_certs(tmp_path_factory.mktemp("misnamed-certs"), server_names="DNS:redis.test")
    server, port = start_tls(tmp_path_factory.mktemp("misnamed"), certs, auth_clients=False)
    yield port, certs
    server.stop()


@pytest.mark.parametrize(("query", "works"), [
    ("ssl_ca_certs={ca}", False),  # verify full: the name does not match
    ("ssl_ca_certs={ca}&ssl_check_hostname=false", True),  # verify ca
    ("ssl_ca_certs={other_ca}&ssl_check_hostname=false", False),  # verify ca, wrong CA
    ("ssl_cert_reqs=none", True),  # verify none
])
async def test_verification_modes(query: str, works: bool, misnamed_port: tuple[int, Certs]) -> None:
    port, certs = misnamed_port
    url = f"rediss://127.0.0.1:{port}?" + query.format(ca=certs.ca, other_ca=certs.other_ca)
    client = make_client(url, what="test")
    try:
        if works:
            await ping_or_raise(client, url)
        else:
            with pytest.raises(RedisUnavailableError, match="TLS certificate is not trusted"):
                await ping_or_raise(client, url)
    finally:
        await client.aclose()
    # The pipelined command connection's opener applies the same checks.
    target = parse_redis_url(url).target()
    if works:
        connection = make_command_connection(target, what="test")
        try:
            assert await connection.call("PING") == "PONG"
        finally:
            await connection.aclose()
    else:
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            await target.open_transport(asyncio.Protocol)


def test_tls_settings_are_refused_at_start_when_files_are_wrong(certs: Certs, tls_port: int, tmp_path: Path) -> None:
    cases = [
        ({"REDIS_TLS_CA": str(tmp_path / "missing.pem")}, "does not exist"),
        ({"REDIS_TLS_CA": str(certs.ca), "REDIS_TLS_KEY": str(certs.client_key)}, "needs its certificate"),
        ({"REDIS_TLS_CA": str(certs.client_key)}, "cannot load the TLS certificates"),
    ]
    for variables, said in cases:
        env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(tls_port), REDIS_TLS="true", **variables)
        out = cli(["status"], env, tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and said in out.stderr, out.stderr
    status = json.dumps(cases)  # the cases quote file names only, never a secret
    assert SECRET not in status
