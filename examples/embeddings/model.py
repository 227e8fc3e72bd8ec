"""The example's stand-in for an embedding model: a deterministic vector from a hash, so the
example runs without downloading anything."""

from __future__ import annotations

import hashlib

DIMENSIONS = 8


def embed(text: str) -> list[float]:
    """`DIMENSIONS` numbers in [0, 1) from the text's SHA-256."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(byte / 256, 4) for byte in digest[:DIMENSIONS]]
