"""Fuzz suite: broken job hashes, written as Node bullmq writes them, against a --burst worker (docs/fuzz.md)."""
