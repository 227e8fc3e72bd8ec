"""Settings of the ported jobs: read at the start of each job (cheap), so a changed `.env` or
environment applies without a restart, and a bad value fails the job with the variable's name."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from twenty_jobs.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    try:
        return cls()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or cls.__name__
        info = cls.model_fields.get(name)
        if info is not None and info.alias:
            name = info.alias
        msg = first["msg"].removeprefix("Value error, ")
        # Only the variable name and pydantic's message: never echo the value (it may be a password).
        raise ConfigError(f"invalid setting {name}: {msg}") from None
