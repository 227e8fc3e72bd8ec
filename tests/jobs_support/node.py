"""Running real Node from tests: node_fixture commands and the dependency-free JSON helper."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "node_fixture" / "bin" / "fixture.js"
NODE_JSON = Path(__file__).with_name("node_json.js")


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("these tests run real Node: install Node.js (>= 20) and put `node` on PATH")
    return node


def fixture(*args: str, prefix: str | None = None, timeout: float = 30) -> Any:
    """Run `node node_fixture/bin/fixture.js <args>` and return its JSON answer."""
    env = dict(os.environ)
    if prefix is not None:
        env["TJ_PREFIX"] = prefix
    proc = subprocess.run(
        [node_binary(), str(FIXTURE), *args], capture_output=True, text=True, env=env, timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node fixture {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def _node_json(mode: str, texts: list[str]) -> Any:
    payload = json.dumps(texts)  # ASCII-only: lone surrogates survive the pipe
    proc = subprocess.run(
        [node_binary(), str(NODE_JSON), mode], input=payload, capture_output=True, text=True, timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def node_restringify(texts: list[str]) -> list[str | None]:
    """`JSON.stringify(JSON.parse(text))` in real Node for each text (None when Node rejects it)."""
    result: list[str | None] = _node_json("restringify", texts)
    return result


def node_webhook_bodies(job_data_text: str) -> list[str]:
    """The bodies Twenty's CallWebhookJob (Node) sends for job data stored as `job_data_text`."""
    result: list[list[str]] = _node_json("webhook-bodies", [job_data_text])
    return result[0]
