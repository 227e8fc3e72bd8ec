"""RedisTarget from URLs and from REDIS_* variables: the forms, the precedence, what is reported
as not used, and the one-line refusals (which never quote a password)."""

from __future__ import annotations

import pytest

from twenty_jobs.connection.endpoint import Endpoint
from twenty_jobs.connection.env import SettingError, TargetChoice, choose_target
from twenty_jobs.connection.target import RedisTarget
from twenty_jobs.connection.tls import TlsOptions
from twenty_jobs.connection.url import parse_redis_url
from twenty_jobs.redaction import redacted_url, scrub, url_secrets

SECRET = "Zq9-s3cret"


def choose(prefix: str = "bull", url_option: str | None = None, **env: str) -> TargetChoice:
    return choose_target(env, url_option=url_option, prefix=prefix)


# -- URL forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379", RedisTarget("tcp", (Endpoint("127.0.0.1", 6379),))),
        ("redis://cache", RedisTarget("tcp", (Endpoint("cache", 6379),))),
        (f"redis://:{SECRET}@h:1/2", RedisTarget("tcp", (Endpoint("h", 1),), password=SECRET, db=2)),
        (f"redis://u:{SECRET}@h:1", RedisTarget("tcp", (Endpoint("h", 1),), username="u", password=SECRET)),
        ("redis://u:p%23%2F%3F%40x@h:1", RedisTarget("tcp", (Endpoint("h", 1),), username="u", password="p#/?@x")),
        (f"redis://h:1/0?password={SECRET}", RedisTarget("tcp", (Endpoint("h", 1),), password=SECRET)),
        ("redis://h:1?db=3", RedisTarget("tcp", (Endpoint("h", 1),), db=3)),
        ("redis://[::1]:7000/1", RedisTarget("tcp", (Endpoint("::1", 7000),), db=1)),
        ("unix:///tmp/r.sock", RedisTarget("unix", socket_path="/tmp/r.sock")),
        (f"unix://:{SECRET}@/tmp/r.sock?db=4", RedisTarget("unix", socket_path="/tmp/r.sock", password=SECRET, db=4)),
        (f"redis+sentinel://:{SECRET}@a:1,b/mymaster/2?sentinel_password=sp",
         RedisTarget("sentinel", (Endpoint("a", 1), Endpoint("b", 26379)), password=SECRET, db=2,
                     sentinel_name="mymaster", sentinel_password="sp")),
        ("redis-cluster://a:1,b:2?hash_tag=bull",
         RedisTarget("cluster", (Endpoint("a", 1), Endpoint("b", 2)), cluster_tag="bull")),
        ("rediss://h:1?ssl_cert_reqs=none", RedisTarget("tcp", (Endpoint("h", 1),), tls=TlsOptions(verify="none"))),
        ("rediss://h:1?ssl_check_hostname=false", RedisTarget("tcp", (Endpoint("h", 1),), tls=TlsOptions(verify="ca"))),
        ("redis://h:1?socket_connect_timeout=0.5", RedisTarget("tcp", (Endpoint("h", 1),), connect_timeout_s=0.5)),
    ],
)
def test_url_forms_parse_to_the_target_and_write_back_to_the_same_target(url: str, expected: RedisTarget) -> None:
    target = parse_redis_url(url).target()
    assert target == expected
    assert parse_redis_url(target.url()).target() == expected
    if expected.password:
        assert SECRET not in target.redacted() and SECRET not in repr(target)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h:1", "starts with one of"),
        ("redis://h:abc", "must be a number from 1 to 65535"),
        ("redis://h:99999", "must be a number from 1 to 65535"),
        ("redis://h:0", "must be a number from 1 to 65535"),
        ("redis://h/x", "database number"),
        ("redis://h/0?db=x", "db in the Redis URL must be a whole number"),
        ("redis://h?socket_timeout=abc", "socket_timeout in the Redis URL must be a number"),
        ("redis://h?socket_connect_timeout=-1", "more than 0"),
        ("redis://h?socket_connect_timeout=nan", "more than 0"),
        ("redis://", "no host"),
        ("unix://tmp/r.sock", "unix:///path/to/redis.sock"),
        ("unix://", "no socket path"),
        ("redis+sentinel://a:1", "no master name"),
        ("redis-cluster://", "lists no node"),
        ("redis-cluster://a:1/2", "only database 0"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
        ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "does not exist"),
        ("redis://a:1:2", "is not host:port"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_redis_url(url).target()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:pa#{SECRET}@h:1",  # unescaped '#': the rest would be a fragment
        f"redis://:pa/{SECRET}@h:1",  # unescaped '/': the rest would be the path
        f"redis://:pa?{SECRET}@h:1",  # unescaped '?': the rest would be the query
        f"redis://u:pa/{SECRET}@h:1",
        f"redis://h:1/0?password=pa#{SECRET}",
    ],
)
def test_a_password_with_an_unescaped_character_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_redis_url(url)
    assert "percent-encode" in str(exc.value)
    assert SECRET not in str(exc.value) and "pa" not in str(exc.value).replace("password", "").replace("part", "")


def test_a_user_name_without_a_password_is_reported_not_used_and_never_shown() -> None:
    parsed = parse_redis_url(f"redis://{SECRET}@h:1")
    assert parsed.username is None and parsed.password is None
    assert len(parsed.unused) == 1 and "redis://:PASSWORD@host" in parsed.unused[0]
    assert SECRET not in parsed.unused[0]


def test_url_parameters_that_are_not_used_are_reported() -> None:
    parsed = parse_redis_url("redis://h:1?socket_timeout=5&family=6&ssl_ca_certs=/x")
    assert len(parsed.unused) == 3
    assert "socket_timeout" in parsed.unused[0] and "family" in parsed.unused[1]
    assert "does not ask for TLS" in parsed.unused[2]


# -- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "password"),
    [
        (f"redis://:{SECRET}@h:1/0", SECRET),
        (f"redis://user:{SECRET}@h:1", SECRET),
        (f"rediss://user:{SECRET}@h:1", SECRET),
        (f"redis://{SECRET}@h:1", SECRET),
        (f"redis://h:1/0?password={SECRET}", SECRET),
        (f"redis://h:1/0?db=1&password={SECRET}&x=1", SECRET),
        (f"redis://:pa#{SECRET}@h:1", f"pa#{SECRET}"),
        (f"redis://:pa/{SECRET}@h:1", f"pa/{SECRET}"),
        (f"redis://:pa?{SECRET}@h:1", f"pa?{SECRET}"),
        (f"redis://:pa@{SECRET}@h:1", f"pa@{SECRET}"),
        (f"redis://:p%40{SECRET}@h:1", f"p@{SECRET}"),
        (f"redis+sentinel://h:1/m?sentinel_password={SECRET}", SECRET),
        (f"postgres://twenty:{SECRET}@db:5432/default", SECRET),
        (f"postgresql://db/default?password={SECRET}&sslmode=require", SECRET),
        (f"postgresql://db/default?sslpassword={SECRET}", SECRET),
        (f"host:1?password={SECRET}", SECRET),
    ],
)
def test_redacted_url_shows_no_secret_whatever_the_form(url: str, password: str) -> None:
    shown = redacted_url(url)
    assert SECRET not in shown and "***" in shown
    # A driver's message that quotes the URL or the password loses both.
    assert SECRET not in scrub(f"error for {url}: auth {password}", url_secrets(url))


def test_redacted_url_keeps_what_is_not_secret() -> None:
    assert redacted_url("redis://:x@h:1/2?db=2") == "redis://***@h:1/2?db=2"
    assert redacted_url("redis://h:1") == "redis://h:1"
    assert redacted_url("rediss://h:1?ssl_ca_certs=/ca.pem&password=p") == "rediss://h:1?ssl_ca_certs=/ca.pem&password=***"


# -- the environment -------------------------------------------------------------------------


def test_default_is_localhost_6379() -> None:
    choice = choose()
    assert choice.target == RedisTarget("tcp", (Endpoint("127.0.0.1", 6379),)) and choice.source == "default"
    assert choice.unused == ()


def test_host_port_and_credentials_are_used_when_no_url_is_set() -> None:
    choice = choose(REDIS_HOST="redis.internal", REDIS_PORT="6380", REDIS_USERNAME="app",
                    REDIS_PASSWORD=SECRET, REDIS_DB="3")
    assert choice.target == RedisTarget("tcp", (Endpoint("redis.internal", 6380),), username="app",
                                        password=SECRET, db=3)
    assert choice.source == "REDIS_HOST" and choice.unused == ()


def test_a_url_wins_over_host_and_port_and_they_are_reported_as_not_used() -> None:
    choice = choose(REDIS_URL="redis://cache:6379/1", REDIS_HOST="other", REDIS_PORT="1", REDIS_PASSWORD=SECRET)
    assert choice.target.nodes == (Endpoint("cache", 6379),) and choice.target.password is None
    assert choice.unused == (
        "REDIS_HOST is set but not used: REDIS_URL takes precedence",
        "REDIS_PORT is set but not used: REDIS_URL takes precedence",
        "REDIS_PASSWORD is set but not used: REDIS_URL takes precedence",
    )


def test_queue_url_wins_over_redis_url_as_in_twenty() -> None:
    choice = choose(REDIS_QUEUE_URL="redis://queue:1", REDIS_URL="redis://cache:2")
    assert choice.target.nodes == (Endpoint("queue", 1),) and choice.source == "REDIS_QUEUE_URL"
    assert choice.unused == ("REDIS_URL is set but not used: REDIS_QUEUE_URL takes precedence for the queues "
                             "(as in Twenty)",)


def test_the_redis_url_option_replaces_every_variable_silently() -> None:
    choice = choose(url_option="redis://flag:1", REDIS_URL="redis://cache:2", REDIS_HOST="h", REDIS_TLS="true")
    assert choice.target.nodes == (Endpoint("flag", 1),) and choice.source == "--redis-url" and choice.unused == ()


def test_tls_variables_refine_a_tls_connection_and_are_reported_otherwise(tmp_path: object) -> None:
    choice = choose(REDIS_HOST="h", REDIS_TLS="true", REDIS_TLS_VERIFY="none")
    assert choice.target.tls == TlsOptions(verify="none")
    unused = choose(REDIS_URL="redis://h:1", REDIS_TLS_VERIFY="none", REDIS_TLS_CA="/x").unused
    assert [u.split(" ")[0] for u in unused] == ["REDIS_TLS_CA", "REDIS_TLS_VERIFY"]
    assert all("does not use TLS" in u for u in unused)
    over = choose(REDIS_URL="rediss://h:1?ssl_cert_reqs=none", REDIS_TLS_VERIFY="full")
    assert over.target.tls == TlsOptions(verify="none")
    assert over.unused == ("REDIS_TLS_VERIFY is set but not used: the URL's ssl_cert_reqs/ssl_check_hostname "
                           "takes precedence",)


def test_sentinel_variables() -> None:
    choice = choose(REDIS_SENTINELS="s1:26379, s2", REDIS_SENTINEL_NAME="mymaster", REDIS_SENTINEL_PASSWORD="sp",
                    REDIS_PASSWORD=SECRET, REDIS_URL="redis://master:6379")
    assert choice.target == RedisTarget("sentinel", (Endpoint("s1", 26379), Endpoint("s2", 26379)),
                                        password=SECRET, sentinel_name="mymaster", sentinel_password="sp")
    assert choice.unused == ("REDIS_URL is set but not used: REDIS_SENTINELS takes precedence",)
    assert "sp" not in choice.target.redacted().replace("sentinel", "")


def test_sentinel_name_is_required_and_sentinel_settings_without_sentinels_are_reported() -> None:
    with pytest.raises(SettingError) as exc:
        choose(REDIS_SENTINELS="s1:1")
    assert exc.value.variable == "REDIS_SENTINEL_NAME"
    assert choose(REDIS_SENTINEL_NAME="m").unused == (
        "REDIS_SENTINEL_NAME is set but not used: the connection does not go through Sentinel (REDIS_SENTINELS)",)


def test_cluster_binds_the_prefix_hash_tag_and_refuses_a_prefix_without_one() -> None:
    choice = choose(prefix="{bull}", REDIS_CLUSTER_NODES="a:7000,b:7001")
    assert choice.target.kind == "cluster" and choice.target.cluster_tag == "bull"
    assert choose(prefix="{jobs}", url_option="redis-cluster://a:1").target.cluster_tag == "jobs"
    for prefix in ("bull", "{}bull", "bull{", "x}{"):
        with pytest.raises(SettingError) as exc:
            choose(prefix=prefix, REDIS_CLUSTER_NODES="a:7000")
        assert exc.value.variable == "TWENTY_JOBS_PREFIX" and "hash tag" in str(exc.value)
    with pytest.raises(SettingError, match="not both"):
        choose(REDIS_CLUSTER_NODES="a:1", REDIS_SENTINELS="b:2", REDIS_SENTINEL_NAME="m")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_PORT": "abc"}, "REDIS_PORT"),
        ({"REDIS_PORT": "99999"}, "REDIS_PORT"),
        ({"REDIS_DB": "x"}, "REDIS_DB"),
        ({"REDIS_TLS": "maybe"}, "REDIS_TLS"),
        ({"REDIS_TLS": "1", "REDIS_TLS_VERIFY": "partial"}, "REDIS_TLS_VERIFY"),
        ({"REDIS_URL": "redis://h:abc"}, "REDIS_URL"),
        ({"REDIS_SENTINELS": "a:b", "REDIS_SENTINEL_NAME": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_CLUSTER_NODES": "a:1", "REDIS_DB": "2"}, "REDIS_CLUSTER_NODES"),
    ],
)
def test_bad_variables_are_refused_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingError) as exc:
        choose(prefix="{b}", **env)
    assert exc.value.variable == variable and "\n" not in str(exc.value)
