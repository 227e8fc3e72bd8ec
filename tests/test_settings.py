"""Settings use Twenty's environment variable names and Twenty's fallbacks."""

from __future__ import annotations

import pytest

from twenty_jobs.errors import ConfigError
from twenty_jobs.settings import load_settings, redacted_url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for var in ("REDIS_QUEUE_URL", "REDIS_URL", "WORKER_ENABLED_QUEUES", "WORKER_EXCLUDED_QUEUES",
                "PG_DATABASE_URL", "TWENTY_JOBS_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(str(tmp_path))  # no stray .env


def test_queue_url_prefers_redis_queue_url_then_redis_url_then_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().queue_redis_url == "redis://127.0.0.1:6379"
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    assert load_settings().queue_redis_url == "redis://cache:6379/1"
    monkeypatch.setenv("REDIS_QUEUE_URL", "rediss://user:pw@queue:6380/2")
    assert load_settings().queue_redis_url == "rediss://user:pw@queue:6380/2"


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


def test_redacted_url_hides_passwords() -> None:
    assert redacted_url("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert redacted_url("redis://h:1") == "redis://h:1"
