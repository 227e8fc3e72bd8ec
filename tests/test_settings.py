"""Settings use Twenty's environment variable names and Twenty's fallbacks."""

from __future__ import annotations

import pytest

from twenty_jobs.connection.env import REDIS_VARS
from twenty_jobs.errors import ConfigError
from twenty_jobs.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for var in (*REDIS_VARS, "WORKER_ENABLED_QUEUES", "WORKER_EXCLUDED_QUEUES", "PG_DATABASE_URL",
                "TWENTY_JOBS_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(str(tmp_path))  # no stray .env


def test_queue_url_prefers_redis_queue_url_then_redis_url_then_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().queue_redis_url == "redis://127.0.0.1:6379"
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    assert load_settings().queue_redis_url == "redis://cache:6379/1"
    monkeypatch.setenv("REDIS_QUEUE_URL", "rediss://user:pw@queue:6380/2?ssl_cert_reqs=none")
    assert load_settings().queue_redis_url == "rediss://user:pw@queue:6380/2?ssl_cert_reqs=none"


def test_queue_lists_are_comma_separated_with_blanks_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_EXCLUDED_QUEUES", "webhook-queue, email-queue,,")
    monkeypatch.setenv("WORKER_ENABLED_QUEUES", "")
    s = load_settings()
    assert s.worker_excluded_queues == ["webhook-queue", "email-queue"]
    assert s.worker_enabled_queues == []


def test_prefix_defaults_to_bull_and_is_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().prefix == "bull"
    monkeypatch.setenv("TWENTY_JOBS_PREFIX", "side")
    assert load_settings().prefix == "side"


def test_bad_redis_url_is_one_line_naming_the_variable_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://user:hunter2@host")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "REDIS_URL" in str(exc.value) and "hunter2" not in str(exc.value) and "\n" not in str(exc.value)


def test_host_and_port_variables_describe_the_redis_when_no_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2")
    settings = load_settings()
    assert settings.queue_redis_url == "redis://:hunter2@redis.internal:6380"
    assert settings.redis_target.redacted() == "redis://***@redis.internal:6380"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_settings_report_what_is_set_and_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379")
    monkeypatch.setenv("REDIS_HOST", "other")
    assert load_settings().unused_settings == ("REDIS_HOST is set but not used: REDIS_URL takes precedence",)
    # --redis-url replaces the variables, as an option does, without a report.
    assert load_settings(redis_url_option="redis://flag:1").unused_settings == ()
    assert load_settings(redis_url_option="redis://flag:1").queue_redis_url == "redis://flag:1"


def test_a_cluster_needs_a_hash_tagged_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "127.0.0.1:7000")
    with pytest.raises(ConfigError, match="--prefix/TWENTY_JOBS_PREFIX: the key prefix 'bull' has no hash tag"):
        load_settings()
    assert load_settings(TWENTY_JOBS_PREFIX="{bull}").redis_target.cluster_tag == "bull"
