"""Choosing the Redis to use from the command line and the environment.

Precedence (docs/connections.md, "Connection settings"):
1. `--redis-url` (it replaces the connection variables without a report, as options do);
2. `REDIS_SENTINELS` (Sentinel) or `REDIS_CLUSTER_NODES` (Cluster): Twenty's own URLs can name
   neither, so setting one of them is a deliberate choice for twenty-jobs;
3. `REDIS_QUEUE_URL`, then `REDIS_URL` (Twenty's rule for its queues);
4. `REDIS_HOST`, `REDIS_PORT` (as the seed apps of issue 11 do when no URL is set);
5. 127.0.0.1:6379.
`REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB` and `REDIS_TLS` go with 2 and 4 (a URL carries
its own); `REDIS_TLS_CA`, `REDIS_TLS_CERT`, `REDIS_TLS_KEY` and `REDIS_TLS_VERIFY` refine any
connection that uses TLS (a URL's own ssl_* parameters win). Every variable that is set but
not used is reported as one sentence naming it, never ignored silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from twenty_jobs.connection import cluster
from twenty_jobs.connection.endpoint import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_SENTINEL_PORT,
    Endpoint,
    parse_endpoints,
    parse_port,
)
from twenty_jobs.connection.target import RedisTarget, TargetKind
from twenty_jobs.connection.tls import TLS_VERIFY_MODES, TlsOptions, TlsVerify
from twenty_jobs.connection.url import ParsedUrl, parse_redis_url
from twenty_jobs.redaction import redacted_url

URL_OPTION = "--redis-url"
URL_VARS = ("REDIS_QUEUE_URL", "REDIS_URL")
HOST_VARS = ("REDIS_HOST", "REDIS_PORT")
AUTH_VARS = ("REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB")
TLS_SWITCH = "REDIS_TLS"
TLS_VARS = ("REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY", "REDIS_TLS_VERIFY")
SENTINEL_LIST = "REDIS_SENTINELS"
SENTINEL_VARS = ("REDIS_SENTINEL_NAME", "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD")
CLUSTER_LIST = "REDIS_CLUSTER_NODES"
PREFIX_VAR = "TWENTY_JOBS_PREFIX"
# Every variable this module reads.
REDIS_VARS = (*URL_VARS, *HOST_VARS, *AUTH_VARS, TLS_SWITCH, *TLS_VARS, SENTINEL_LIST, *SENTINEL_VARS, CLUSTER_LIST)


class SettingError(ValueError):
    """A bad value, with the variable (or option) it came from."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True, slots=True)
class TargetChoice:
    target: RedisTarget
    # Where the target came from: "--redis-url", a variable name, or "default".
    source: str
    # One sentence per setting that is set but not used.
    unused: tuple[str, ...]


def choose_target(env: Mapping[str, str], *, url_option: str | None = None, prefix: str) -> TargetChoice:
    """The target the settings in `env` (variable -> value; empty values count as unset) and
    `--redis-url` describe, for key prefix `prefix`. Raises SettingError."""
    given = {name: value for name, value in env.items() if name in REDIS_VARS and value.strip()}
    unused: list[str] = []
    reported: set[str] = set()

    def not_used(names: tuple[str, ...], reason: str) -> None:
        for name in names:
            if name in given and name not in reported:
                reported.add(name)
                unused.append(f"{name} is set but not used: {reason}")

    if url_option:
        # An option typed on the command line replaces the connection variables, as options
        # do; that is not reported (the TLS refinements still apply and are).
        source = URL_OPTION
        parsed = _parse_url(URL_OPTION, url_option)
        reported.update((*URL_VARS, SENTINEL_LIST, CLUSTER_LIST, *HOST_VARS, *AUTH_VARS, TLS_SWITCH, *SENTINEL_VARS))
    elif SENTINEL_LIST in given and CLUSTER_LIST in given:
        raise SettingError(CLUSTER_LIST, f"set {SENTINEL_LIST} or {CLUSTER_LIST}, not both")
    elif SENTINEL_LIST in given or CLUSTER_LIST in given:
        source = SENTINEL_LIST if SENTINEL_LIST in given else CLUSTER_LIST
        parsed = _from_variables(given, "sentinel" if source == SENTINEL_LIST else "cluster")
        not_used(URL_VARS, f"{source} takes precedence")
        not_used(HOST_VARS, f"{source} takes precedence")
    elif any(name in given for name in URL_VARS):
        source = next(name for name in URL_VARS if name in given)
        parsed = _parse_url(source, given[source])
        if source == "REDIS_QUEUE_URL":
            not_used(("REDIS_URL",), "REDIS_QUEUE_URL takes precedence for the queues (as in Twenty)")
        not_used((*HOST_VARS, *AUTH_VARS, TLS_SWITCH), f"{source} takes precedence")
    else:
        source = "REDIS_HOST" if any(name in given for name in HOST_VARS) else "default"
        parsed = _from_variables(given, "tcp")
    unused.extend(f"{source}: {sentence}" for sentence in parsed.unused)
    if parsed.kind != "sentinel":
        not_used(SENTINEL_VARS, "the connection does not go through Sentinel (REDIS_SENTINELS)")
    if parsed.kind == "cluster":
        _bind_cluster_tag(parsed, prefix, source, unused)
    tls = _tls_options(parsed, given, source, not_used)
    try:
        target = parsed.target(tls)
    except ValueError as exc:
        raise SettingError(source, str(exc)) from None
    return TargetChoice(target, source, tuple(unused))


def _parse_url(variable: str, value: str) -> ParsedUrl:
    try:
        return parse_redis_url(value)
    except ValueError as exc:
        raise SettingError(variable, f"{exc} (got {redacted_url(value.strip())!r})") from None


def _from_variables(given: Mapping[str, str], kind: TargetKind) -> ParsedUrl:
    """A target described by REDIS_HOST/REDIS_PORT, REDIS_SENTINELS or REDIS_CLUSTER_NODES and
    the credential, database and TLS variables."""
    parsed = ParsedUrl(kind=kind, tls=_flag(given, TLS_SWITCH))
    try:
        if kind == "sentinel":
            parsed.nodes = parse_endpoints(given[SENTINEL_LIST], default_port=DEFAULT_SENTINEL_PORT, what=SENTINEL_LIST)
        elif kind == "cluster":
            parsed.nodes = parse_endpoints(given[CLUSTER_LIST], default_port=DEFAULT_PORT, what=CLUSTER_LIST)
        else:
            port = DEFAULT_PORT
            if "REDIS_PORT" in given:
                try:
                    port = parse_port(given["REDIS_PORT"], what="the port")
                except ValueError as exc:
                    raise SettingError("REDIS_PORT", str(exc)) from None
            parsed.nodes = (Endpoint(given.get("REDIS_HOST", DEFAULT_HOST).strip(), port),)
    except SettingError:
        raise
    except ValueError as exc:
        variable = {"sentinel": SENTINEL_LIST, "cluster": CLUSTER_LIST}.get(kind, "REDIS_HOST")
        raise SettingError(variable, str(exc).removeprefix(f"{variable}: ")) from None
    if kind == "sentinel":
        if "REDIS_SENTINEL_NAME" not in given:
            raise SettingError(
                "REDIS_SENTINEL_NAME", "REDIS_SENTINELS is set, so name the master the sentinels monitor "
                "(the name in `sentinel monitor NAME ...`)"
            )
        parsed.sentinel_name = given["REDIS_SENTINEL_NAME"].strip()
        parsed.sentinel_username = given.get("REDIS_SENTINEL_USERNAME")
        parsed.sentinel_password = given.get("REDIS_SENTINEL_PASSWORD")
    if "REDIS_PASSWORD" in given:
        parsed.password = given["REDIS_PASSWORD"]
        parsed.username = given.get("REDIS_USERNAME")
    elif "REDIS_USERNAME" in given:
        parsed.unused.append("REDIS_USERNAME is set but not used: REDIS_PASSWORD is not set")
    if "REDIS_DB" in given:
        db = given["REDIS_DB"].strip()
        if not db.isdigit():
            raise SettingError("REDIS_DB", f"must be a database number (0, 1, ...), got {db!r}")
        parsed.db = int(db)
    return parsed


def _flag(given: Mapping[str, str], name: str) -> bool:
    value = given.get(name, "false").strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise SettingError(name, f"must be true or false, got {value!r}")


def _bind_cluster_tag(parsed: ParsedUrl, prefix: str, source: str, unused: list[str]) -> None:
    tag = cluster.hash_tag(prefix)
    if tag is None:
        raise SettingError(PREFIX_VAR, cluster_prefix_problem(prefix))
    if parsed.cluster_tag is not None and parsed.cluster_tag != tag:
        unused.append(f"{source}: hash_tag in the Redis URL is not used: the key prefix {prefix!r} decides the slot")
    parsed.cluster_tag = tag


def cluster_prefix_problem(prefix: str) -> str:
    return (
        f"the key prefix {prefix!r} has no hash tag, so on Redis Cluster a queue's keys would be spread over "
        "slots and BullMQ's scripts refused; use a prefix with one, such as '{bull}' (--prefix or "
        "TWENTY_JOBS_PREFIX; Twenty's own 'bull' prefix cannot run on a cluster)"
    )


def _tls_options(
    parsed: ParsedUrl, given: Mapping[str, str], source: str, report: Callable[[tuple[str, ...], str], None]
) -> TlsOptions | None:
    if not parsed.tls:
        report(TLS_VARS, "the connection does not use TLS (use rediss:// or REDIS_TLS=true)")
        return None
    q = parsed.tls_query
    chosen: dict[str, str | None] = {}
    for variable, from_url, url_name in (
        ("REDIS_TLS_CA", q.ca_file, "ssl_ca_certs"),
        ("REDIS_TLS_CERT", q.cert_file, "ssl_certfile"),
        ("REDIS_TLS_KEY", q.key_file, "ssl_keyfile"),
        ("REDIS_TLS_VERIFY", q.verify, "ssl_cert_reqs/ssl_check_hostname"),
    ):
        if from_url is not None:
            report((variable,), f"the URL's {url_name} takes precedence")
        chosen[variable] = from_url if from_url is not None else given.get(variable)
    verify = (chosen["REDIS_TLS_VERIFY"] or "full").strip().lower()
    if verify not in TLS_VERIFY_MODES:
        raise SettingError("REDIS_TLS_VERIFY", f"must be one of {', '.join(TLS_VERIFY_MODES)}, got {verify!r}")
    tls_verify: TlsVerify = "full" if verify == "full" else "ca" if verify == "ca" else "none"
    try:
        return TlsOptions(chosen["REDIS_TLS_CA"], chosen["REDIS_TLS_CERT"], chosen["REDIS_TLS_KEY"], tls_verify)
    except ValueError as exc:
        raise SettingError(f"{source} TLS settings", str(exc)) from None
