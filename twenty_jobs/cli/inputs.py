"""Values typed on the command line that need more than a type: job data as JSON, and a backoff.

Whatever is refused here is refused with one line saying why; whatever is accepted is something
the worker (Python or Node) reads back exactly (docs/cli.md, "Bounds").
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from twenty_jobs.cli.errors import fail
from twenty_jobs.cli.options import MAX_DELAY_MS
from twenty_jobs.twenty.options import Backoff, BackoffStrategy

# Job data nested deeper than this is refused: Python's json (the worker's reader) gives up at
# about 990 levels, and a margin leaves room for the worker's own stack.
MAX_DATA_DEPTH = 512


def read_data_arg(value: str, what: str = "--data") -> Any:
    """`--data` as JSON; `-` reads standard input (as UTF-8 bytes, whatever the locale)."""
    if value == "-":
        raw = sys.stdin.buffer.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            fail(f"{what} from standard input is not valid UTF-8 (byte {exc.start}); job data is stored as UTF-8 JSON")
    else:
        text = value
    return parse_json_arg(text, what)


def parse_json_arg(text: str, what: str) -> Any:
    """Parse `text` as JSON for job data; refuse what Node's JSON.parse or the worker could not read."""
    try:
        # Bytes that are not UTF-8 reach Python's argv as lone surrogates (PEP 383).
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        fail(f"{what} is not valid UTF-8 (character {exc.start}); job data is stored as UTF-8 JSON")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {text[:80]!r}")
    except RecursionError:
        fail(f"{what} is nested more than {MAX_DATA_DEPTH} levels deep")
    except ValueError as exc:  # NaN/Infinity, from _refuse_constant
        fail(f"{what} is not valid JSON: {exc}")
    if _depth(value) > MAX_DATA_DEPTH:
        fail(f"{what} is nested more than {MAX_DATA_DEPTH} levels deep")
    try:
        # An escaped lone surrogate ("\\udc80") parses, but cannot be stored as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        fail(f"{what} contains an unpaired surrogate escape (like \\udc80), which is not valid UTF-8")
    return value


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; Node's JSON.parse (a Node worker reading the job) does not.
    raise ValueError(f"{name} is not JSON (write null or a string)")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def parse_backoff(text: str) -> Backoff:
    """`fixed:MS` or `exponential:MS[:JITTER]`, with MS within the delay bound and JITTER in [0, 1]."""
    usage = f"--backoff must look like fixed:1000 or exponential:5000:0.5, not {text!r}"
    parts = text.split(":")
    if parts[0] not in ("fixed", "exponential") or len(parts) not in (2, 3):
        fail(usage)
    try:
        delay = int(parts[1])
        jitter = float(parts[2]) if len(parts) == 3 else None
    except ValueError:
        fail(usage)
    if not 0 <= delay <= MAX_DELAY_MS:
        fail(f"--backoff delay must be between 0 and {MAX_DELAY_MS} ms (10 years), not {parts[1]}")
    if jitter is not None and not (math.isfinite(jitter) and 0 <= jitter <= 1):
        fail(f"--backoff jitter must be a number between 0 and 1, not {parts[2]}")
    strategy: BackoffStrategy = "fixed" if parts[0] == "fixed" else "exponential"
    return Backoff(strategy, delay, jitter)
