"""JSON text exactly as Node's `JSON.stringify` writes it.

Twenty signs each webhook with HMAC-SHA256 over `<timestamp>:<JSON.stringify(payload)>` and sends
those very bytes as the body (call-webhook.job.ts, docs/webhook-email.md). A receiver verifies the
signature over the bytes it got, so ours must be Node's bytes, not merely equivalent JSON:

* compact separators, no spaces;
* non-ASCII written raw (UTF-8 on the wire), U+2028/U+2029 included; only `"`, `\\`, and code
  units below U+0020 are escaped (`\\b \\f \\n \\r \\t`, the rest `\\u00xx` in lowercase hex);
  a lone surrogate is written `\\udxxx` (ES2019 "well-formed JSON.stringify");
* numbers as JavaScript prints a double (`Number::toString`): shortest round-trip digits, `1e+21`,
  `1e-7`, `0.000001`, `-0` as `0`, NaN and ±Infinity as `null`; integers beyond 2**53 are first
  rounded to the nearest double, as `JSON.parse` does when Node reads the job;
* object keys in JavaScript's property order: integer-like keys ("0" .. "4294967294", canonical
  form) first in ascending numeric order, then the other keys in insertion order.

The input is what `json.loads` makes of job data (dict, list, str, int, float, bool, None). A dict
carries the key order of the stored JSON text, which is the order Node's `JSON.parse` would see.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

__all__ = ["dumps_bytes", "format_number", "parse", "stringify"]

# The C-accelerated encoder with ensure_ascii=False escapes exactly what JSON.stringify escapes
# (`"`, `\`, \b \f \n \r \t, other C0 controls as lowercase \u00xx), except lone surrogates,
# which it writes raw. Those are rare and handled on a slow path.
_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR_OR_LONE = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")

# ECMAScript array index: a canonical decimal string for an integer in 0 .. 2**32 - 2.
_MAX_ARRAY_INDEX = 2**32 - 2
# Integers a double represents exactly; beyond this JSON.parse rounds.
_MAX_SAFE_EXACT = 2**53


def stringify(value: Any) -> str:
    """`JSON.stringify(value)` for JSON-shaped data, as a str (encode it as UTF-8 for the wire)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def dumps_bytes(value: Any) -> bytes:
    """The UTF-8 bytes Node sends for `JSON.stringify(value)` (what axios puts in a request body)."""
    return stringify(value).encode("utf-8")


def parse(text: str | bytes) -> Any:
    """`JSON.parse` for text Node or BullMQ wrote: standard JSON only (no NaN/Infinity literals).

    Numbers keep Python's exact ints; `stringify` rounds them the way Node would, so a value read
    here and written back yields Node's bytes.
    """
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (JSON.parse rejects it)")


def _write(value: Any, out: list[str]) -> None:
    # Order matters: bool is a subclass of int.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int | float):
        out.append(format_number(value))
    elif isinstance(value, dict):
        _write_object(value, out)
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        out.append("[")
        first = True
        for item in value:
            if not first:
                out.append(",")
            first = False
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON the way JSON.stringify does")


def _write_object(obj: dict[Any, Any], out: list[str]) -> None:
    if not obj:
        out.append("{}")
        return
    keys = list(obj)
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be str, got {type(key).__name__}")
    index_keys = [k for k in keys if _is_array_index(k)]
    if index_keys:
        # V8 (like the spec's OrdinaryOwnPropertyKeys) lists array-index keys first, ascending.
        index_keys.sort(key=int)
        seen = set(index_keys)
        keys = index_keys + [k for k in keys if k not in seen]
    out.append("{")
    first = True
    for key in keys:
        if not first:
            out.append(",")
        first = False
        out.append(_quote(key))
        out.append(":")
        _write(obj[key], out)
    out.append("}")


def _is_array_index(key: str) -> bool:
    if not key or not key.isascii() or not key.isdigit():
        return False
    if len(key) > 1 and key[0] == "0":
        return False  # "01" is not canonical, so it stays a string key in insertion order
    return int(key) <= _MAX_ARRAY_INDEX


def _quote(s: str) -> str:
    if _SURROGATE.search(s) is None:
        return str(_encode_basestring(s))
    # JavaScript strings are UTF-16: a high+low surrogate pair that Python holds as two code
    # points is one character to Node (written raw); a lone surrogate is written as \udxxx.
    def fix(match: re.Match[str]) -> str:
        text = match.group(0)
        if len(text) == 2:
            return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        return f"\\u{ord(text):04x}"

    escaped = str(_encode_basestring(s))
    return _SURROGATE_PAIR_OR_LONE.sub(fix, escaped)


def format_number(value: int | float) -> str:
    """JavaScript's `Number.prototype.toString()` of the double nearest to `value` (JSON form:
    non-finite numbers become `null`)."""
    if isinstance(value, int):
        if -_MAX_SAFE_EXACT <= value <= _MAX_SAFE_EXACT:
            return str(value)
        try:
            value = float(value)  # correctly rounded, as JSON.parse rounds a long integer literal
        except OverflowError:
            return "null"  # JSON.parse gives ±Infinity, which JSON.stringify writes as null
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    # repr() is the shortest string that round-trips (like Number::toString's digit choice);
    # only the layout differs, so split it into digits and a decimal exponent and re-lay it out.
    digits_t, exponent = _digits(abs(value))
    digits = "".join(map(str, digits_t))
    k = len(digits)
    n = exponent + k  # value = 0.<digits> * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp = f"e+{e}" if e >= 0 else f"e-{-e}"
        body = digits + exp if k == 1 else f"{digits[0]}.{digits[1:]}{exp}"
    return sign + body


def _digits(value: float) -> tuple[tuple[int, ...], int]:
    """Significant digits (no trailing zeros) and exponent of the shortest round-trip decimal."""
    _sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digit_list = list(digits)
    while len(digit_list) > 1 and digit_list[-1] == 0:
        digit_list.pop()
        exponent += 1
    return tuple(digit_list), exponent
