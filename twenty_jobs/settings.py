"""Configuration from the environment, under the variable names Twenty itself uses.

A team points twenty-jobs at the same `.env` its Twenty server reads: `REDIS_QUEUE_URL` (falling
back to `REDIS_URL`), `WORKER_ENABLED_QUEUES` / `WORKER_EXCLUDED_QUEUES` (`PG_DATABASE_URL` is read by the ported
jobs' own settings, twenty_jobs/jobs/db.py).
Without a URL, the Redis is described by `REDIS_HOST`, `REDIS_PORT`, ... or by `REDIS_SENTINELS`
or `REDIS_CLUSTER_NODES`; connection/env.py decides which, and reports what is set but not used.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from twenty_jobs.connection.env import PREFIX_VAR, SettingError, TargetChoice, choose_target
from twenty_jobs.connection.target import RedisTarget
from twenty_jobs.errors import ConfigError
from twenty_jobs.redaction import redacted_url as redacted_url
from twenty_jobs.wire.keys import DEFAULT_PREFIX
from twenty_jobs.wire.names import prefix_problem

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
PREFIX_LABEL = f"--prefix/{PREFIX_VAR}"


def parse_queue_list(value: object) -> list[str]:
    """Twenty's ARRAY config type: comma-separated, blanks dropped (parse-queue-list-from-env.util.ts)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ValueError(f"expected a comma-separated list of queue names, got {value!r}")


class Settings(BaseSettings):
    """Settings read from the environment (and `.env` in the working directory)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # The Redis (connection/env.py): URLs, or host/port, or Sentinel, or Cluster, + TLS.
    redis_queue_url: str | None = Field(default=None, alias="REDIS_QUEUE_URL", repr=False)
    redis_url: str | None = Field(default=None, alias="REDIS_URL", repr=False)
    redis_host: str | None = Field(default=None, alias="REDIS_HOST")
    redis_port: str | None = Field(default=None, alias="REDIS_PORT")
    redis_username: str | None = Field(default=None, alias="REDIS_USERNAME")
    redis_password: SecretStr | None = Field(default=None, alias="REDIS_PASSWORD")
    redis_db: str | None = Field(default=None, alias="REDIS_DB")
    redis_tls: str | None = Field(default=None, alias="REDIS_TLS")
    redis_tls_ca: str | None = Field(default=None, alias="REDIS_TLS_CA")
    redis_tls_cert: str | None = Field(default=None, alias="REDIS_TLS_CERT")
    redis_tls_key: str | None = Field(default=None, alias="REDIS_TLS_KEY")
    redis_tls_verify: str | None = Field(default=None, alias="REDIS_TLS_VERIFY")
    redis_sentinels: str | None = Field(default=None, alias="REDIS_SENTINELS")
    redis_sentinel_name: str | None = Field(default=None, alias="REDIS_SENTINEL_NAME")
    redis_sentinel_username: str | None = Field(default=None, alias="REDIS_SENTINEL_USERNAME")
    redis_sentinel_password: SecretStr | None = Field(default=None, alias="REDIS_SENTINEL_PASSWORD")
    redis_cluster_nodes: str | None = Field(default=None, alias="REDIS_CLUSTER_NODES")

    worker_enabled_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="WORKER_ENABLED_QUEUES"
    )
    worker_excluded_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="WORKER_EXCLUDED_QUEUES"
    )
    prefix: str = Field(default=DEFAULT_PREFIX, alias="TWENTY_JOBS_PREFIX")

    # `--redis-url`, which outranks every variable (load_settings sets it).
    _redis_url_option: str | None = PrivateAttr(default=None)

    @field_validator("worker_enabled_queues", "worker_excluded_queues", mode="before")
    @classmethod
    def _split_queue_list(cls, value: object) -> list[str]:
        return parse_queue_list(value)

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        problem = prefix_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def redis_variables(self) -> dict[str, str]:
        """The Redis variables that are set, by name, with their values."""
        found: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.alias and info.alias.startswith("REDIS_") and value is not None:
                found[info.alias] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return found

    def redis_choice(self) -> TargetChoice:
        """The Redis to use, where that came from, and the settings that are set but not used.
        Raises ConfigError naming the variable for a bad value."""
        try:
            return choose_target(self.redis_variables(), url_option=self._redis_url_option, prefix=self.prefix)
        except SettingError as exc:
            label = PREFIX_LABEL if exc.variable == PREFIX_VAR else exc.variable
            raise ConfigError(f"invalid setting {label}: {exc}") from None

    def use_redis_url_option(self, url: str | None) -> None:
        """Use `url` (the `--redis-url` option) over every Redis variable."""
        self._redis_url_option = url

    @property
    def redis_target(self) -> RedisTarget:
        return self.redis_choice().target

    @property
    def unused_settings(self) -> tuple[str, ...]:
        """One sentence per Redis setting that is set but not used (say them to the user)."""
        return self.redis_choice().unused

    @property
    def queue_redis_url(self) -> str:
        """The Redis the queues live on, as a URL (with its password: for code that takes a URL,
        never for a message; `redis_target.redacted()` is for messages)."""
        return self.redis_target.url()


def load_settings(*, redis_url_option: str | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags; `redis_url_option` is
    `--redis-url`); a bad value becomes a one-line ConfigError naming the variable."""
    try:
        clean: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        settings = Settings(**clean)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        info = Settings.model_fields.get(field)
        field = info.alias if info is not None and info.alias else field
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {field}: {msg}") from None
    settings.use_redis_url_option(redis_url_option)
    settings.redis_choice()  # every Redis setting is checked now, not at first use
    return settings
