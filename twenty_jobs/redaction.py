"""Keeping passwords out of messages: URLs shown with their secrets masked, and driver error texts
scrubbed of every form a URL's secret can take.

Connection URLs reach messages in shapes a parser does not expect: a password with an unescaped
`#`, `/` or `?` (the URL parser then cuts the password in two and calls part of it the host, the
path or the fragment), a password alone before the `@` (`redis://PASSWORD@host`), a
`?password=` query parameter (redis-py and libpq honour it). So the masking here does not trust
a parse: everything before the LAST `@` of the URL is hidden, and the values of query parameters
that name a secret. See docs/connections.md ("Secrets").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

# Query parameters whose value is a secret (redis-py: password; sentinel: sentinel_password;
# libpq: password, sslpassword; anything else spelled like a secret).
_SECRET_PARAM = re.compile(r"(?i)(pass|pwd|secret|token|auth)")
# One query parameter: its name, and its value up to the next `&name=` (a value that contains an
# unescaped `&` stays whole) or the end.
_QUERY_PARAM = re.compile(r"([^&=#]*)=(.*?)(?=&[A-Za-z_][A-Za-z0-9_.-]*=|$)", re.DOTALL)


def redacted_url(url: str) -> str:
    """`url` with its secrets replaced by `***`, safe for logs and error messages.

    The user name goes too: in `scheme://TEXT@host` one cannot tell a user name from a password
    that was written without the `:`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        rest = MASK + rest[rest.rindex("@"):]
    rest, hash_sign, _fragment = rest.partition("#")
    before_query, question, query = rest.partition("?")
    if question:
        before_query += "?" + _mask_query(query)
    shown = before_query + (f"#{MASK}" if hash_sign else "")
    return f"{scheme}://{shown}" if sep else shown


def _mask_query(query: str) -> str:
    def mask(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={MASK}" if _SECRET_PARAM.search(name) else match.group(0)

    return _QUERY_PARAM.sub(mask, query)


def url_secrets(url: str) -> list[str]:
    """Every text that may be a secret of `url`, as written and percent-decoded: the whole part
    before the last `@`, the part after its first `:`, and secret query values. For scrubbing
    messages that a driver built from the URL (`scrub`)."""
    found: list[str] = []
    _scheme, sep, rest = url.partition("://")
    if not sep:
        rest = url
    if "@" in rest:
        userinfo = rest[: rest.rindex("@")]
        found.append(userinfo)
        _user, colon, password = userinfo.partition(":")
        if colon:
            found.append(password)
    query = rest.partition("?")[2].partition("#")[0] if "?" in rest else ""
    for match in _QUERY_PARAM.finditer(query):
        if _SECRET_PARAM.search(match.group(1)):
            found.append(match.group(2))
    return _with_decoded(found)


def _with_decoded(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for form in (value, unquote(value)):
            if form and form not in out:
                out.append(form)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted(out, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each of `secrets` replaced by `***` (a driver's message may quote them)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
