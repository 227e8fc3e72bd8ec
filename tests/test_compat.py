"""wire/compat.py: the mixed-version guard (Node bullmq < 6 sharing a queue with the Python port).

The behaviour behind each rule is proven against real Node in interop_tests/test_compat_interop.py;
these tests pin the rules themselves."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from twenty_jobs.errors import ConfigError
from twenty_jobs.wire.compat import (
    LegacyRepeatable,
    NodeVersion,
    PauseResumeRefused,
    check_queue,
    find_legacy_repeatables,
    is_legacy_repeatable,
    legacy_repeat_key,
    md5_of_legacy_key,
    node_major_below_6,
    parse_meta_version,
    read_node_version,
    refuse_pause_resume,
    startup_warning,
)

Q = "cron-queue"


# -- versions -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "triple", "below_6", "stall_field", "defa"),
    [
        ("bullmq:5.40.0", (5, 40, 0), True, "stalledCounter", False),  # Twenty's pin
        ("bullmq:5.48.9", (5, 48, 9), True, "stalledCounter", False),
        ("bullmq:5.49.0", (5, 49, 0), True, "stc", False),
        ("bullmq:5.49.2", (5, 49, 2), True, "stc", True),
        ("bullmq:5.81.5", (5, 81, 5), True, "stc", True),
        ("bullmq:6.0.0-beta.1", (6, 0, 0), False, "stc", True),
        ("bullmq:6.4.0", (6, 4, 0), False, "stc", True),
        ("bullmq:10.0.1", (10, 0, 1), False, "stc", True),
    ],
)
def test_meta_versions_are_parsed_with_their_hazards(
    text: str, triple: tuple[int, int, int], below_6: bool, stall_field: str, defa: bool
) -> None:
    version = parse_meta_version(text)
    assert version is not None
    assert version.triple == triple
    assert version.below_6 is below_6
    assert node_major_below_6(version) is below_6
    assert version.stall_counter_field == stall_field
    assert version.honours_deferred_failure is defa
    assert str(version) == ".".join(map(str, triple))


@pytest.mark.parametrize("value", [None, "", "bullmq:", "bullmq:latest", "bull:5.40.0", "5.40.0", b"", "x:6.0.0"])
def test_values_that_are_not_a_bullmq_meta_version_give_none(value: str | bytes | None) -> None:
    assert parse_meta_version(value) is None


def test_versions_compare_by_number_and_accept_bytes() -> None:
    assert parse_meta_version(b"bullmq:5.40.0") == NodeVersion(5, 40, 0)
    assert NodeVersion(5, 9, 0) < NodeVersion(5, 40, 0) < NodeVersion(6, 0, 0)
    assert node_major_below_6("5.40.0") and not node_major_below_6("6.4.0")
    assert node_major_below_6(None) is False  # no Node seen: nothing to guard


async def test_read_node_version_reads_the_meta_hash(redis: aioredis.Redis, prefix: str) -> None:
    assert await read_node_version(redis, prefix, Q) is None
    await redis.hset(f"{prefix}:{Q}:meta", mapping={"version": "bullmq:5.40.0", "opts.maxLenEvents": "10000"})
    assert await read_node_version(redis, prefix, Q) == NodeVersion(5, 40, 0)


# -- legacy repeatables ---------------------------------------------------------------------------

def test_legacy_key_md5_matches_what_node_5_40_stores() -> None:
    # Observed in Redis after Node 5.40.0 queue.add('LegacyJob', data, {repeat: {pattern: '*/5 * * * *'}}).
    key = legacy_repeat_key("LegacyJob", pattern="*/5 * * * *")
    assert key == "LegacyJob::::*/5 * * * *"
    assert md5_of_legacy_key(key) == "93ad21ca1084fa62a22bbf83c60f285f"
    assert md5_of_legacy_key(legacy_repeat_key("LegacyEvery", job_id="abc", every=60000)) == (
        "bf55e07f14d15681c21010f2c39e2810"
    )


@pytest.mark.parametrize(
    ("member", "fields", "legacy"),
    [
        ("93ad21ca1084fa62a22bbf83c60f285f", {"name": "LegacyJob", "pattern": "*/5 * * * *"}, True),
        ("Old:id:1700000000000:UTC:0 * * * *", {}, True),  # oldest form: no hash at all
        ("Old:id:::0 * * * *", {"name": "Old", "pattern": "0 * * * *"}, True),
        ("CleanOnboardingWorkspacesJob", {"name": "CleanOnboardingWorkspacesJob", "pattern": "0 * * * *",
                                          "opts": "{}"}, False),  # Twenty's addCron
        ("Sched", {"name": "Sched", "every": "1000", "ic": "3"}, False),
        ("Sched", {"name": "Sched", "every": "1000", "data": "{\"a\":1}"}, False),
        ("Sched", {"name": "Sched", "every": "1000"}, False),  # fresh 5.40 scheduler without template
        ("a:b:c:d:e", {"name": "a", "every": "1", "ic": "1"}, False),  # a colon-rich scheduler id
        ("93ad21ca1084fa62a22bbf83c60f285f", {"name": "x", "ic": "1"}, False),
    ],
)
def test_legacy_repeatables_are_told_from_job_schedulers(member: str, fields: dict[str, str], legacy: bool) -> None:
    assert is_legacy_repeatable(member, fields) is legacy


async def test_find_legacy_repeatables_lists_only_legacy_entries(redis: aioredis.Redis, prefix: str) -> None:
    repeat = f"{prefix}:{Q}:repeat"
    md5 = md5_of_legacy_key(legacy_repeat_key("LegacyJob", pattern="*/5 * * * *"))
    await redis.zadd(repeat, {
        md5: 1000, "OldPattern:id1::Europe/Paris:30 2 * * *": 2000, "OldEvery::::60000": 3000,
        "TwentyCron": 4000, "Iterated": 5000, "Bare": 6000,
    })
    await redis.hset(f"{repeat}:{md5}", mapping={"name": "LegacyJob", "pattern": "*/5 * * * *"})
    await redis.hset(f"{repeat}:TwentyCron", mapping={"name": "TwentyCron", "pattern": "0 * * * *", "opts": "{}"})
    await redis.hset(f"{repeat}:Iterated", mapping={"name": "Iterated", "every": "500", "ic": "7"})
    await redis.hset(f"{repeat}:Bare", mapping={"name": "Bare", "every": "500"})

    found = await find_legacy_repeatables(redis, prefix, Q)
    assert found == [
        LegacyRepeatable(Q, md5, "md5", "LegacyJob", "*/5 * * * *", None, 1000),
        LegacyRepeatable(Q, "OldPattern:id1::Europe/Paris:30 2 * * *", "colon", "OldPattern", "30 2 * * *",
                         None, 2000, tz="Europe/Paris"),
        LegacyRepeatable(Q, "OldEvery::::60000", "colon", "OldEvery", None, 60000, 3000),
    ]
    assert [r.schedule for r in found] == ["pattern '*/5 * * * *'", "pattern '30 2 * * *'", "every 60000 ms"]
    assert await find_legacy_repeatables(redis, prefix, "email-queue") == []


# -- the startup warning --------------------------------------------------------------------------

def test_no_warning_without_node_5_or_legacy_repeatables() -> None:
    assert startup_warning(Q, None) is None
    assert startup_warning(Q, NodeVersion(6, 4, 0)) is None


def test_warning_for_twentys_node_5_40_explains_every_hazard() -> None:
    text = startup_warning(Q, NodeVersion(5, 40, 0))
    assert text is not None
    assert "queue 'cron-queue' is shared with Node bullmq 5.40.0 (below 6)" in text
    assert "refuses to pause or resume" in text and "RENAMEs" in text and "--force" in text
    assert "`stalledCounter`" in text and "`stc`" in text and "doubled" in text
    assert "`defa`" in text and "5.49.2" in text
    assert "WORKER_EXCLUDED_QUEUES" in text


def test_warning_for_a_newer_node_5_names_only_the_pause_hazard() -> None:
    text = startup_warning(Q, NodeVersion(5, 81, 5))
    assert text is not None
    assert "refuses to pause or resume" in text
    assert "stalledCounter" not in text and "defa" not in text


def test_warning_lists_legacy_repeatables_even_with_node_6() -> None:
    legacy = [LegacyRepeatable(Q, f"k{i}", "md5", f"Job{i}", "0 * * * *", None, 0) for i in range(7)]
    text = startup_warning(Q, NodeVersion(6, 4, 0), legacy)
    assert text is not None
    assert "7 legacy repeatable job(s)" in text
    assert "Job0 (pattern '0 * * * *')" in text and "and 2 more" in text
    assert "removeRepeatableByKey" in text and "cron register" in text
    assert "Job5" not in text


async def test_check_queue_gathers_version_legacy_and_warning(redis: aioredis.Redis, prefix: str) -> None:
    await redis.hset(f"{prefix}:{Q}:meta", "version", "bullmq:5.40.0")
    await redis.zadd(f"{prefix}:{Q}:repeat", {"Old:::: */5 * * * *": 1})
    report = await check_queue(redis, prefix, Q)
    assert report.node_version == NodeVersion(5, 40, 0) and report.node_below_6
    assert [r.name for r in report.legacy_repeatables] == ["Old"]
    assert report.warning is not None and "legacy repeatable" in report.warning


# -- pause / resume -------------------------------------------------------------------------------

async def test_pause_is_refused_while_node_below_6_shares_the_queue(redis: aioredis.Redis, prefix: str) -> None:
    await redis.hset(f"{prefix}:{Q}:meta", "version", "bullmq:5.40.0")
    with pytest.raises(PauseResumeRefused) as refused:
        await refuse_pause_resume(redis, prefix, Q, action="pause")
    assert isinstance(refused.value, ConfigError)  # the CLI turns it into one line, exit 2
    message = str(refused.value)
    assert "refusing to pause queue 'cron-queue'" in message and "5.40.0" in message and "--force" in message
    with pytest.raises(PauseResumeRefused, match="refusing to resume"):
        await refuse_pause_resume(redis, prefix, Q, action="resume")
    assert await redis.hgetall(f"{prefix}:{Q}:meta") == {"version": "bullmq:5.40.0"}  # nothing written

    assert await refuse_pause_resume(redis, prefix, Q, force=True) == NodeVersion(5, 40, 0)


async def test_pause_is_allowed_with_node_6_or_no_node(redis: aioredis.Redis, prefix: str) -> None:
    assert await refuse_pause_resume(redis, prefix, Q) is None
    await redis.hset(f"{prefix}:{Q}:meta", "version", "bullmq:6.4.0")
    assert await refuse_pause_resume(redis, prefix, Q) == NodeVersion(6, 4, 0)
