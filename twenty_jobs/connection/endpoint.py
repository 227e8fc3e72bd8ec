"""A Redis address (`host:port`) and the parsing of address lists such as REDIS_SENTINELS."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a Redis address needs a host")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range (1-65535)")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoints(text: str, *, default_port: int, what: str) -> tuple[Endpoint, ...]:
    """`host:port,host:port` (IPv6 hosts in brackets); the port defaults to `default_port`.
    `what` names the setting in messages."""
    endpoints: list[Endpoint] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        endpoints.append(parse_endpoint(item, default_port=default_port, what=what))
    if not endpoints:
        raise ValueError(f"{what} lists no host:port")
    return tuple(endpoints)


def parse_endpoint(item: str, *, default_port: int, what: str) -> Endpoint:
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{what}: {item!r} is not host:port (write IPv6 addresses as [addr]:port)")
        port_text = rest[1:] if rest else ""
    elif item.count(":") > 1:
        raise ValueError(f"{what}: {item!r} is not host:port (write IPv6 addresses as [addr]:port)")
    else:
        host, _colon, port_text = item.partition(":")
    if not host:
        raise ValueError(f"{what}: {item!r} has no host")
    return Endpoint(host, parse_port(port_text, what=f"the port in {what}") if port_text else default_port)


def parse_port(text: str, *, what: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{what} must be a number from 1 to 65535, got {text!r}")
    return int(text)
