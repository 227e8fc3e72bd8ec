"""Redis Cluster (issue 13, item 5) on a local 3-master cluster: with a hash-tagged prefix such as
`{bull}` the producer, the worker, status, failed retry and the other commands work through
REDIS_CLUSTER_NODES or a redis-cluster:// URL; a prefix without a hash tag is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from twenty_jobs.connection.client import make_client, make_command_connection
from twenty_jobs.connection.cluster import tag_slot
from twenty_jobs.settings import load_settings

from .redis_servers import ClusterGroup, RedisProcess, start_cluster
from .test_connect_cli import SECRET, clean_env, cli, every_command_works


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGroup]:
    started: list[RedisProcess] = []
    try:
        yield start_cluster(tmp_path_factory.mktemp("cluster"), started, password=SECRET)
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture
def clean_cluster(cluster: ClusterGroup) -> ClusterGroup:
    cluster.flush()  # our own cluster, started by the fixture above
    return cluster


def keys_per_node(cluster: ClusterGroup) -> dict[int, int]:
    counts = {}
    for port in cluster.ports:
        client = cluster.client(port)
        try:
            counts[port] = int(client.dbsize())
        finally:
            client.close()
    return counts


@pytest.mark.parametrize("via", ["REDIS_CLUSTER_NODES", "URL"])
def test_every_command_works_on_a_cluster_with_prefix_bull_in_braces(
    via: str, clean_cluster: ClusterGroup, tmp_path: Path
) -> None:
    if via == "URL":
        env = clean_env(REDIS_URL=f"redis-cluster://:{SECRET}@{clean_cluster.nodes}")
    else:
        env = clean_env(REDIS_CLUSTER_NODES=clean_cluster.nodes, REDIS_PASSWORD=SECRET)
    said = every_command_works(env, tmp_path, "{bull}")
    assert all(SECRET not in text for text in said)
    # Every key of every queue is in the slot of the tag, on the node that serves it.
    owner = clean_cluster.owner_port(tag_slot("bull"))
    counts = keys_per_node(clean_cluster)
    assert counts[owner] > 0 and sum(counts.values()) == counts[owner]


def test_a_prefix_without_a_hash_tag_is_refused_in_one_line(cluster: ClusterGroup, tmp_path: Path) -> None:
    for args, env in [
        (["status"], clean_env(REDIS_CLUSTER_NODES=cluster.nodes, REDIS_PASSWORD=SECRET)),
        (["enqueue", "email-queue", "X", "--prefix", "bull"], clean_env(REDIS_CLUSTER_NODES=cluster.nodes)),
        (["work", "--prefix", "{}bull", "--redis-url", f"redis-cluster://{cluster.nodes}"], clean_env()),
    ]:
        out = cli(args, env, tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "has no hash tag" in out.stderr and "cannot run on a cluster" in out.stderr


async def test_the_command_connection_reaches_the_node_serving_the_prefix_slot(cluster: ClusterGroup) -> None:
    for tag in ("bull", "jobs", "x"):
        target = load_settings(redis_url_option=f"redis-cluster://:{SECRET}@{cluster.nodes}",
                               TWENTY_JOBS_PREFIX=f"{{{tag}}}").redis_target
        connection = make_command_connection(target, what="test")
        try:
            my_id = await connection.call("CLUSTER", "MYID")
            assert await connection.call("SET", f"{{{tag}}}:probe", "1") == "OK"  # no MOVED
        finally:
            await connection.aclose()
        assert my_id == cluster.node_id(cluster.owner_port(tag_slot(tag)))


async def test_a_slot_that_moves_is_followed_after_the_moved_reply(clean_cluster: ClusterGroup) -> None:
    """A slot given to another node (resharding, failover): the MOVED reply drops the connection
    and the retry finds the new owner."""
    tag = f"move-{uuid.uuid4().hex[:6]}"
    slot = tag_slot(tag)
    target = load_settings(redis_url_option=f"redis-cluster://:{SECRET}@{clean_cluster.nodes}",
                           TWENTY_JOBS_PREFIX=f"{{{tag}}}").redis_target
    client = make_client(target, what="test", retry_forever=True)
    try:
        await client.set(f"{{{tag}}}:a", "1")
        old_owner = clean_cluster.owner_port(slot)
        await client.delete(f"{{{tag}}}:a")  # an empty slot can be reassigned directly
        new_owner = next(port for port in clean_cluster.ports if port != old_owner)
        new_id = clean_cluster.node_id(new_owner)
        for port in (new_owner, old_owner, *[p for p in clean_cluster.ports if p not in (new_owner, old_owner)]):
            node = clean_cluster.client(port)
            try:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_id)
            finally:
                node.close()
        await client.set(f"{{{tag}}}:b", "2")
        assert client.connection is not None and client.connection.port == new_owner
    finally:
        await client.aclose()
    node = clean_cluster.client(new_owner)
    try:
        assert node.get(f"{{{tag}}}:b") == "2"
    finally:
        node.close()
