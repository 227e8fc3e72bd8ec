"""Redis URLs: parsing them into a RedisTarget's parts (`RedisTarget.url()` writes them back).

Forms (docs/connections.md, "URL forms"):
    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?QUERY]       rediss:// for TLS
    unix://[[USER]:PASSWORD@]/PATH/TO/redis.sock[?db=DB]
    redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER_NAME[/DB][?QUERY]
    redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][?QUERY]
(`rediss+sentinel://`, `rediss-cluster://` for TLS.) Query parameters use redis-py's names:
db, username, password, ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs
(required|optional|none), ssl_check_hostname, socket_connect_timeout; sentinel_username and
sentinel_password for Sentinel; hash_tag for Cluster. Anything else is reported as not used.

The parser never puts a secret into an error: the part before the `@` is never quoted, and a
URL whose password was not percent-encoded (an `@` after the host part, or a `#`) is refused
with how to encode it, because any reading of such a URL would be a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, unquote

from twenty_jobs.connection.endpoint import (
    DEFAULT_PORT,
    DEFAULT_SENTINEL_PORT,
    Endpoint,
    parse_endpoint,
    parse_endpoints,
)
from twenty_jobs.connection.target import RedisTarget, TargetKind
from twenty_jobs.connection.tls import TlsOptions, TlsVerify

# scheme -> (kind, TLS)
SCHEMES: dict[str, tuple[TargetKind, bool]] = {
    "redis": ("tcp", False),
    "rediss": ("tcp", True),
    "unix": ("unix", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis-cluster": ("cluster", False),
    "rediss-cluster": ("cluster", True),
}
TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
KNOWN_PARAMS = (
    "db", "username", "password", *TLS_PARAMS, "socket_connect_timeout", "socket_timeout",
    "sentinel_username", "sentinel_password", "hash_tag",
)
ENCODING_HINT = "percent-encode it in the password (# as %23, / as %2F, ? as %3F, @ as %40)"


@dataclass(slots=True)
class TlsQuery:
    """TLS settings a URL's query gave (None: not given there)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: TlsVerify | None = None


@dataclass(slots=True)
class ParsedUrl:
    """What a Redis URL says, before TLS settings from the environment are merged in."""

    kind: TargetKind
    tls: bool
    nodes: tuple[Endpoint, ...] = ()
    socket_path: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    tls_query: TlsQuery = field(default_factory=TlsQuery)
    sentinel_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    cluster_tag: str | None = None
    connect_timeout_s: float | None = None
    # Things the URL says that twenty-jobs does not use, as sentences (reported, never silent).
    unused: list[str] = field(default_factory=list)

    def target(self, tls: TlsOptions | None = None) -> RedisTarget:
        """The target, with `tls` (when this URL asks for TLS) or the URL's own TLS settings."""
        if self.tls and tls is None:
            q = self.tls_query
            tls = TlsOptions(q.ca_file, q.cert_file, q.key_file, q.verify or "full")
        target = RedisTarget(
            kind=self.kind,
            nodes=self.nodes,
            socket_path=self.socket_path,
            username=self.username,
            password=self.password,
            db=self.db,
            tls=tls if self.tls else None,
            sentinel_name=self.sentinel_name,
            sentinel_username=self.sentinel_username,
            sentinel_password=self.sentinel_password,
            cluster_tag=self.cluster_tag,
        )
        if self.connect_timeout_s is not None:
            target = replace(target, connect_timeout_s=self.connect_timeout_s)
        return target


def parse_redis_url(text: str) -> ParsedUrl:
    """Parse a Redis URL (see the module docstring). Raises ValueError with a message that
    quotes no secret."""
    url = text.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"a Redis URL starts with one of {', '.join(s + '://' for s in SCHEMES)}")
    if "#" in rest:
        raise ValueError(f"the URL contains '#': if it is part of the password, {ENCODING_HINT}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, remainder = rest[:cut], rest[cut:]
    if "@" in remainder:
        raise ValueError(
            f"the URL has an '@' after its host part: if the password contains '/', '?' or '@', {ENCODING_HINT}"
        )
    kind, tls = SCHEMES[scheme]
    parsed = ParsedUrl(kind=kind, tls=tls)
    hostpart = _read_userinfo(authority, parsed)
    path, _q, query = remainder.partition("?")
    if kind == "tcp":
        if not hostpart:
            raise ValueError("the URL has no host (redis://HOST:PORT)")
        parsed.nodes = (parse_endpoint(hostpart, default_port=DEFAULT_PORT, what="the URL"),)
        parsed.db = _path_db(path)
        db_in_path = bool(path.strip("/"))
    elif kind == "unix":
        if hostpart:
            raise ValueError("a unix socket URL has an absolute path and no host: unix:///path/to/redis.sock")
        socket_path = unquote(path)
        if len(socket_path) < 2:
            raise ValueError("the unix socket URL has no socket path: unix:///path/to/redis.sock")
        parsed.socket_path = socket_path
        db_in_path = False
    elif kind == "sentinel":
        if not hostpart:
            raise ValueError("the Sentinel URL lists no sentinel (redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME)")
        parsed.nodes = parse_endpoints(hostpart, default_port=DEFAULT_SENTINEL_PORT, what="the URL")
        name, _slash, db_text = path.removeprefix("/").partition("/")
        if not name:
            raise ValueError("the Sentinel URL has no master name (redis+sentinel://HOST:PORT/MASTER_NAME)")
        parsed.sentinel_name = unquote(name)
        parsed.db = _path_db(f"/{db_text}")
        db_in_path = bool(db_text.strip("/"))
    else:
        if not hostpart:
            raise ValueError("the Cluster URL lists no node (redis-cluster://HOST:PORT,HOST:PORT)")
        parsed.nodes = parse_endpoints(hostpart, default_port=DEFAULT_PORT, what="the URL")
        parsed.db = _path_db(path)
        db_in_path = bool(path.strip("/"))
    _read_query(query, parsed, path_db=parsed.db if db_in_path else None)
    return parsed


def _read_userinfo(authority: str, parsed: ParsedUrl) -> str:
    """Store the user and password of `authority` in `parsed`; return the host part."""
    if "@" not in authority:
        return authority
    userinfo, _at, hostpart = authority.rpartition("@")
    user, _colon, password = userinfo.partition(":")
    if password:
        parsed.password = unquote(password)
        parsed.username = unquote(user) or None
    elif user:
        # Twenty's ioredis ignores a user name given without a password, and so do we; but
        # it is often a password written without its leading ':'.
        parsed.unused.append(
            "the user name in the Redis URL is not used: it has no password (as in Twenty's ioredis); "
            "if it is the password, write it after a colon: redis://:PASSWORD@host"
        )
    return hostpart


def _path_db(path: str) -> int:
    text = path.strip("/")
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError("the URL's path must be /<database number> (/0, /1, ...)")
    return int(text)


def _read_query(query: str, parsed: ParsedUrl, *, path_db: int | None) -> None:
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "db":
            db = _int(value, name)
            if path_db is None:
                parsed.db = db
            elif db != path_db:
                parsed.unused.append("db in the Redis URL query is not used: the URL's path gives the database")
        elif name in ("username", "password"):
            _query_credential(name, value, parsed)
        elif name in TLS_PARAMS:
            if not parsed.tls:
                parsed.unused.append(f"{name} in the Redis URL is not used: the URL does not ask for TLS (rediss://)")
                continue
            _tls_param(name, value, parsed.tls_query)
        elif name == "socket_connect_timeout":
            parsed.connect_timeout_s = _seconds(value, name)
        elif name == "socket_timeout":
            if value.lower() != "none":
                _seconds(value, name)
            parsed.unused.append(
                "socket_timeout in the Redis URL is not used: twenty-jobs never times out a read, or an idle "
                "worker's blocking wait would be cut (docs/traps.md F1); socket_connect_timeout is honoured"
            )
        elif name in ("sentinel_username", "sentinel_password") and parsed.kind == "sentinel":
            setattr(parsed, name, value or None)
        elif name == "hash_tag" and parsed.kind == "cluster":
            parsed.cluster_tag = value or None
        elif name in KNOWN_PARAMS:
            parsed.unused.append(f"{name} in the Redis URL is not used with {parsed.kind} connections")
        else:
            parsed.unused.append(
                f"the Redis URL parameter {name!r} is not used (twenty-jobs knows {', '.join(KNOWN_PARAMS)})"
            )


def _query_credential(name: str, value: str, parsed: ParsedUrl) -> None:
    if getattr(parsed, name) is not None:
        parsed.unused.append(f"{name} in the Redis URL query is not used: the URL's user info gives one")
    elif value:
        setattr(parsed, name, value)


def _tls_param(name: str, value: str, tls: TlsQuery) -> None:
    if name == "ssl_ca_certs":
        tls.ca_file = value or None
    elif name == "ssl_certfile":
        tls.cert_file = value or None
    elif name == "ssl_keyfile":
        tls.key_file = value or None
    elif name == "ssl_cert_reqs":
        reqs = value.lower()
        if reqs not in ("required", "optional", "none"):
            raise ValueError(f"ssl_cert_reqs must be required, optional or none, got {value!r}")
        if reqs == "none":
            tls.verify = "none"
        elif tls.verify is None:
            tls.verify = "full"
    else:
        check = _bool(value, name)
        if not check and tls.verify != "none":
            tls.verify = "ca"


def _int(value: str, name: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"{name} in the Redis URL must be a whole number, got {value!r}")
    return int(value)


def _seconds(value: str, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{name} in the Redis URL must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= 3600):
        raise ValueError(f"{name} in the Redis URL must be more than 0 and at most 3600 seconds, got {value!r}")
    return seconds


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name} in the Redis URL must be true or false, got {value!r}")
