"""Outbound HTTP with Twenty's SSRF protection: the client the ported jobs use to call user URLs.

Twenty's `SecureHttpClientService` (secure-http-client.service.ts) refuses, when
`OUTBOUND_HTTP_SAFE_MODE_ENABLED` is true (the default), any request whose host resolves to a
private or internal address (utils/is-private-ip.util.ts), and pins the connection to the address
it checked so a second DNS answer cannot swap it (get-secure-axios-adapter.util.ts). Hosts listed
in `OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS` may reach private addresses but never link-local ones,
where cloud metadata services live (get-is-blocked-ip.util.ts). Current Twenty
(docs/webhook-email.md, "Outbound rules"): an entry may be a host, `host:port` or a URL and is
matched on the host name alone; a `*` entry, like the deprecated
`OUTBOUND_HTTP_SAFE_MODE_ENABLED=false`, turns the guard off; bodies are capped at 50 MiB and
redirects at 5.

Here, in safe mode:
* every address the name resolves to must be public (Twenty checks the first answer only), and the
  connection goes to that checked address (TLS still verifies the original host name via SNI);
* "internal" is anything Python's `ipaddress` does not call global (a superset of Twenty's list:
  it adds CGNAT 100.64/10, multicast, reserved and documentation ranges); every IPv6 form that
  embeds an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, 6to4, NAT64 well-known
  and local-use) is judged as that IPv4 address;
* redirects are followed here, at most MAX_REDIRECTS, and every hop is checked the same way.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from twenty_jobs.settings import parse_queue_list

MAX_REDIRECTS = 5
ALLOW_ALL_INTERNAL_HOSTS = "*"
# Twenty's maxBodyLength / maxContentLength for outbound requests.
MAX_BODY_BYTES = 50 * 1024 * 1024

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# RFC 8215 local-use NAT64 prefix; with a /48 prefix, RFC 6052 puts the IPv4 address in bits 48-63
# and 72-87 (bits 64-71 are the reserved "u" octet).
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# IPv4-compatible (deprecated, ::a.b.c.d) and IPv4-translated (RFC 2765, ::ffff:0:a.b.c.d) forms.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundSettings(BaseSettings):
    """Twenty's outbound HTTP settings, under Twenty's names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    safe_mode: bool = Field(default=True, alias="OUTBOUND_HTTP_SAFE_MODE_ENABLED")
    allowed_internal_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="OUTBOUND_HTTP_ALLOWED_INTERNAL_HOSTS"
    )

    @field_validator("allowed_internal_hosts", mode="before")
    @classmethod
    def _split(cls, value: object) -> list[str]:
        # Twenty's ARRAY config type: comma-separated, blanks dropped; each entry reduced to its
        # host name, as normalizeAllowedInternalHost does.
        return [allowed_host_name(entry) for entry in parse_queue_list(value)]

    @property
    def guard_enabled(self) -> bool:
        """False when safe mode is off or `*` is allowed: Twenty then checks no address."""
        return self.safe_mode and ALLOW_ALL_INTERNAL_HOSTS not in self.allowed_internal_hosts


def allowed_host_name(entry: str) -> str:
    """The host name of an allow-list entry: `host`, `host:port`, `[v6]:port` or a URL."""
    entry = entry.strip()
    if entry == ALLOW_ALL_INTERNAL_HOSTS:
        return entry
    candidate = entry if "://" in entry else f"http://{entry}"
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        host = None
    return (host or entry).lower().rstrip(".")


class OutboundBlocked(Exception):
    """The target resolves to an address safe mode refuses."""


class InvalidTarget(Exception):
    """The URL cannot be requested at all (bad syntax, not http/https, redirect loop)."""


class ResolutionFailed(Exception):
    """DNS gave no address for the host (may be temporary)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    value = int(ip)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _NAT64_LOCAL:
        high = (value >> 64) & 0xFFFF  # bits 48-63
        low = (value >> 40) & 0xFFFF  # bits 72-87
        return ipaddress.IPv4Address((high << 16) | low)
    return None


def _normalize(address: str | IPAddress) -> IPAddress:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return embedded
    return ip


def is_link_local(address: str | IPAddress) -> bool:
    ip = _normalize(address)
    return any(ip.version == net.version and ip in net for net in _LINK_LOCAL)


def is_internal(address: str | IPAddress) -> bool:
    """True for loopback, private, link-local, shared, reserved, multicast and unspecified addresses."""
    ip = _normalize(address)
    return not ip.is_global or ip.is_multicast or is_link_local(ip)


def is_blocked(address: str, host: str, settings: OutboundSettings) -> bool:
    """Twenty's rule: allowlisted hosts are only kept off link-local; others off every internal address."""
    if not settings.guard_enabled:
        return False
    if host.lower().rstrip(".") in settings.allowed_internal_hosts:
        return is_link_local(address)
    return is_internal(address)


async def resolve_checked(host: str, port: int, settings: OutboundSettings) -> list[str]:
    """The addresses to connect to for `host`, in resolver order, after checking every one."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ResolutionFailed(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise ResolutionFailed(f"cannot resolve {host}: no address")
    for address in addresses:
        if is_blocked(address, host, settings):
            # Twenty's wording (get-secure-axios-adapter.util.ts), which its job recognises.
            raise OutboundBlocked(f"Request to internal IP address {address} is not allowed.")
    return addresses


_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for the process (building one per client costs milliseconds)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
        try:
            import certifi

            _ssl_context.load_verify_locations(certifi.where())
        except ImportError:  # the system store is enough
            pass
    return _ssl_context


def new_client(timeout_s: float, settings: OutboundSettings) -> httpx.AsyncClient:
    """A client that never follows redirects by itself (each hop is checked here).

    In safe mode connections go to checked addresses and are not kept alive: a pooled connection
    is keyed by address, so a later request for another host name on the same address would
    reuse a TLS session verified for the first name.
    """
    keepalive = 0 if settings.guard_enabled else 20
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        verify=ssl_context(),
        trust_env=False,  # a proxy would defeat the address check
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=keepalive),
    )


@dataclass(frozen=True, slots=True)
class HttpResponseInfo:
    status: int
    url: str
    retry_after: str | None


Method = Literal["POST", "GET"]


async def send(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    settings: OutboundSettings,
) -> HttpResponseInfo:
    """POST `body` to `url`, following redirects like axios (301/302/303 become GET without a
    body; 307/308 repeat the POST) with the safe-mode check on every hop.

    Raises OutboundBlocked, InvalidTarget, ResolutionFailed or httpx.HTTPError.
    """
    if len(body) > MAX_BODY_BYTES:
        raise InvalidTarget(f"request body of {len(body)} bytes is over Twenty's 50 MiB cap")
    method: Method = "POST"
    content: bytes | None = body
    hop_headers = dict(headers)
    current = _parse_url(url)
    # Credentials in the URL become a Basic header (as axios does) so the URL that httpx logs and
    # that redirects are resolved against carries no password; they go to the original host only.
    origin = (current.scheme, current.host, current.port)
    authorization = _basic_auth(current)
    current = current.copy_with(userinfo=b"")
    for _ in range(MAX_REDIRECTS + 1):
        sent_headers = dict(hop_headers)
        if authorization and (current.scheme, current.host, current.port) == origin:
            sent_headers["Authorization"] = authorization
        response = await _send_one(client, method, current, content, sent_headers, settings)
        # The body is never read: the status decides, and a slow body must not turn an accepted
        # delivery into a timeout (and a duplicate on retry).
        await response.aclose()
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            return HttpResponseInfo(response.status_code, str(current), response.headers.get("retry-after"))
        try:
            current = _parse_url(str(current.join(location)))
        except InvalidTarget as exc:
            raise InvalidTarget(f"redirect to an unusable location: {exc}") from None
        if response.status_code in (301, 302, 303) and method == "POST":
            method, content = "GET", None
            hop_headers = {k: v for k, v in hop_headers.items() if not k.lower().startswith("content-")}
    raise InvalidTarget(f"more than {MAX_REDIRECTS} redirects")


def _basic_auth(url: httpx.URL) -> str | None:
    if not url.userinfo:
        return None
    token = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
    return f"Basic {token}"


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidTarget(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidTarget("URL should use http/https protocol")
    if not parsed.host:
        raise InvalidTarget("URL has no host")
    return parsed


async def _send_one(
    client: httpx.AsyncClient,
    method: Method,
    url: httpx.URL,
    content: bytes | None,
    headers: dict[str, str],
    settings: OutboundSettings,
) -> httpx.Response:
    if not settings.guard_enabled:
        request = client.build_request(method, url, content=content, headers=headers)
        return await client.send(request, stream=True)
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve_checked(url.host, port, settings)
    # Connect to a checked address; keep the name for the Host header and for TLS (SNI and
    # certificate check), as Twenty's pinned lookup does. Unlike Twenty (first answer only), the
    # next checked address is tried when one refuses the connection (e.g. ::1 before 127.0.0.1).
    request_headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    last_error: httpx.ConnectError | None = None
    for address in addresses:
        request = client.build_request(method, url.copy_with(host=address), content=content,
                                       headers=request_headers, extensions=extensions)
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error
