"""Configuration from the environment, under the variable names Twenty itself uses.

A team points twenty-jobs at the same `.env` its Twenty server reads: `REDIS_QUEUE_URL` (falling
back to `REDIS_URL`), `WORKER_ENABLED_QUEUES` / `WORKER_EXCLUDED_QUEUES`. (`PG_DATABASE_URL` is
read by the ported jobs' own settings, twenty_jobs/jobs/db.py.)
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from twenty_jobs.errors import ConfigError
from twenty_jobs.wire.keys import DEFAULT_PREFIX
from twenty_jobs.wire.names import prefix_problem

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"


def parse_queue_list(value: object) -> list[str]:
    """Twenty's ARRAY config type: comma-separated, blanks dropped (parse-queue-list-from-env.util.ts)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ValueError(f"expected a comma-separated list of queue names, got {value!r}")


def validate_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"Redis URL must start with redis://, rediss:// or unix:// (got {redacted_url(url)!r})"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"Redis URL has no host: {redacted_url(url)!r}")
    return url


def redacted_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return parts._replace(netloc=netloc).geturl()


class Settings(BaseSettings):
    """Settings read from the environment (and `.env` in the working directory)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    redis_queue_url: str | None = Field(default=None, alias="REDIS_QUEUE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    worker_enabled_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="WORKER_ENABLED_QUEUES"
    )
    worker_excluded_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="WORKER_EXCLUDED_QUEUES"
    )
    prefix: str = Field(default=DEFAULT_PREFIX, alias="TWENTY_JOBS_PREFIX")

    @field_validator("worker_enabled_queues", "worker_excluded_queues", mode="before")
    @classmethod
    def _split_queue_list(cls, value: object) -> list[str]:
        return parse_queue_list(value)

    @field_validator("redis_queue_url", "redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return validate_redis_url(value) if value else None

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        problem = prefix_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def queue_redis_url(self) -> str:
        """The Redis the queues live on: Twenty's rule, REDIS_QUEUE_URL then REDIS_URL."""
        return self.redis_queue_url or self.redis_url or DEFAULT_REDIS_URL


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags); a bad value becomes a
    one-line ConfigError naming the variable."""
    try:
        clean: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**clean)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        info = Settings.model_fields.get(field)
        field = info.alias if info is not None and info.alias else field
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {field}: {msg}") from None
