"""Extra redis-server processes for connection tests: plain, unix socket, TLS, Sentinel, Cluster.

Each runs in a temporary directory on free loopback ports, is a child of the test process, and
is stopped by its own pid (never by name). Nothing here touches the shared Redis on 6379.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
START_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    return free_port()


@dataclass
class RedisProcess:
    """One redis-server (or sentinel) started by a test."""

    name: str
    workdir: Path
    args: list[str]
    ping: Callable[[], Any]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *self.args, "--logfile", str(self.log_path)],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.ping()
                return self
            except (redis.RedisError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                    self.stop()
                    raise RuntimeError(f"{self.name} did not start: {log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def base_args(workdir: Path, name: str) -> list[str]:
    # No persistence: these servers live for one test.
    return ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--dbfilename", f"{name}.rdb",
            "--bind", "127.0.0.1"]


def plain_ping(port: int, **kwargs: Any) -> Callable[[], Any]:
    def ping() -> Any:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2, **kwargs)
        try:
            return client.ping()
        finally:
            client.close()

    return ping


def start_plain(workdir: Path, name: str, *extra: str, port: int | None = None,
                password: str | None = None) -> tuple[RedisProcess, int]:
    port = port or free_port()
    args = ["--port", str(port), *base_args(workdir, name), *extra]
    if password:
        args += ["--requirepass", password]
    return RedisProcess(name, workdir, args, plain_ping(port, password=password)).start(), port


@pytest.fixture
def processes() -> Iterator[list[RedisProcess]]:
    """Servers a test starts; all stopped (by pid) at the end, in reverse order."""
    started: list[RedisProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


# -- TLS -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """A CA, a server certificate it signed (for `server_names`), a client certificate it signed,
    and an unrelated CA (for "wrong CA" tests)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(directory: Path, server_names: str = "IP:127.0.0.1,DNS:localhost") -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=twenty-jobs test {ca}", cwd=directory)
    for name, ext in (("server", f"subjectAltName={server_names}"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=twenty-jobs test {name}", cwd=directory)
        (directory / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    return Certs(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                 directory / "client.crt", directory / "client.key", directory / "other-ca.crt")


def start_tls(
    workdir: Path, certs: Certs, *, auth_clients: bool, password: str | None = None
) -> tuple[RedisProcess, int]:
    """A redis-server that speaks only TLS, on a free port."""
    port = free_port()
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs.server_cert),
            "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", "yes" if auth_clients else "no", *base_args(workdir, f"tls-{port}")]
    if password:
        args += ["--requirepass", password]
    # Readiness only: the certificate's names are the tests' business.
    ping = plain_ping(port, password=password, ssl=True, ssl_ca_certs=str(certs.ca), ssl_check_hostname=False,
                      ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key))
    return RedisProcess(f"tls-{port}", workdir, args, ping).start(), port


# -- Sentinel --------------------------------------------------------------------------------------

SENTINEL_MASTER_NAME = "mymaster"


@dataclass
class SentinelGroup:
    """A master, one replica and three sentinels on loopback, with passwords on all of them."""

    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    password: str
    sentinel_password: str

    @property
    def sentinels(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], password=self.sentinel_password, decode_responses=True)

    def master_port_now(self) -> int:
        client = self.sentinel_client()
        try:
            return int(client.sentinel_get_master_addr_by_name(SENTINEL_MASTER_NAME)[1])
        finally:
            client.close()

    def data_client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.1)


def start_sentinel_group(workdir: Path, started: list[RedisProcess], *, password: str,
                         sentinel_password: str) -> SentinelGroup:
    """Start the group (each process appended to `started`, for the caller to stop) and wait
    until the sentinels see the replica and each other and the replica is in sync."""
    master, master_port = start_plain(workdir, "master", "--masterauth", password, password=password)
    started.append(master)
    replica, replica_port = start_plain(workdir, "replica", "--replicaof", "127.0.0.1", str(master_port),
                                        "--masterauth", password, password=password)
    started.append(replica)
    group = SentinelGroup(master_port, replica_port, [], password, sentinel_password)
    for index in range(3):
        port = free_port()
        conf = workdir / f"sentinel-{index}.conf"
        # Generous down-after: a loaded test machine must not fail over by itself; the tests
        # fail over on purpose with SENTINEL FAILOVER.
        conf.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", f"dir {workdir}",
            f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}",
            f"sentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {master_port} 2",
            f"sentinel auth-pass {SENTINEL_MASTER_NAME} {password}",
            f"sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} 10000",
            f"sentinel failover-timeout {SENTINEL_MASTER_NAME} 20000",
            f"sentinel parallel-syncs {SENTINEL_MASTER_NAME} 1", "",
        ]))
        process = RedisProcess(f"sentinel-{index}", workdir, [str(conf), "--sentinel"],
                               plain_ping(port, password=sentinel_password))
        started.append(process.start())
        group.sentinel_ports.append(port)

    def ready() -> bool:
        for index in range(3):
            client = group.sentinel_client(index)
            try:
                if not client.sentinel_slaves(SENTINEL_MASTER_NAME) or len(
                        client.sentinel_sentinels(SENTINEL_MASTER_NAME)) < 2:
                    return False
            finally:
                client.close()
        return in_sync(group)

    wait_for(ready, 60, "the sentinels to find the replica and each other")
    return group


def in_sync(group: SentinelGroup) -> bool:
    replica = group.data_client(group.replica_port)
    try:
        return bool(replica.info("replication").get("master_link_status") == "up")
    finally:
        replica.close()


def fail_over(group: SentinelGroup) -> int:
    """SENTINEL FAILOVER, and wait until the sentinels name the replica as master; its port."""
    before = group.master_port_now()
    client = group.sentinel_client()
    try:
        client.execute_command("SENTINEL", "FAILOVER", SENTINEL_MASTER_NAME)
    finally:
        client.close()
    wait_for(lambda: group.master_port_now() != before, 60, "the failover")
    # The old master takes writes until Sentinel turns it into a replica (and closes its clients).
    wait_for(lambda: role(group, before) == "slave", 60, "the old master to become a replica")
    return group.master_port_now()


def role(group: SentinelGroup, port: int) -> str:
    client = group.data_client(port)
    try:
        return str(client.execute_command("ROLE")[0])
    finally:
        client.close()


# -- Cluster ---------------------------------------------------------------------------------------


@dataclass
class ClusterGroup:
    """Three masters forming a Redis Cluster on loopback (no replicas), with a password."""

    ports: list[int]
    password: str

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True)

    def owner_port(self, slot: int) -> int:
        client = self.client(self.ports[0])
        try:
            for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        finally:
            client.close()
        raise LookupError(slot)

    def node_id(self, port: int) -> str:
        client = self.client(port)
        try:
            return str(client.execute_command("CLUSTER", "MYID"))
        finally:
            client.close()

    def flush(self) -> None:
        for port in self.ports:
            client = self.client(port)
            try:
                client.flushall()
            finally:
                client.close()


def start_cluster(workdir: Path, started: list[RedisProcess], *, password: str) -> ClusterGroup:
    ports = []
    for index in range(3):
        process, port = start_plain(
            workdir, f"cluster-{index}", "--cluster-enabled", "yes",
            "--cluster-config-file", str(workdir / f"nodes-{index}.conf"), "--cluster-node-timeout", "15000",
            # The bus port on a free port of its own (the default, port + 10000, may be taken or too high).
            "--cluster-port", str(free_port()),
            "--masterauth", password, password=password,
        )
        started.append(process)
        ports.append(port)
    subprocess.run([REDIS_CLI, "-a", password, "--no-auth-warning", "--cluster", "create",
                    *[f"127.0.0.1:{port}" for port in ports], "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    group = ClusterGroup(ports, password)

    def ok() -> bool:
        for port in ports:
            client = group.client(port)
            try:
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
            finally:
                client.close()
        return True

    wait_for(ok, 60, "the cluster to be ok")
    return group
