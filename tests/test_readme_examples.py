"""The README's examples run as pasted: the handler module with the `work` command under it, and
the Python producer script (each against the local Redis, under the test's own prefix)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import REDIS_URL

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def code_block(first_line: str) -> str:
    """The README code block whose first line is `first_line`."""
    for match in re.finditer(r"```(\w+)\n(.*?)```", README, re.S):
        if match.group(2).startswith(first_line + "\n"):
            return match.group(2)
    raise AssertionError(f"no README code block starts with {first_line!r}")


def shell_lines(first_command: str) -> list[str]:
    """The commands of the sh block whose first line starts with `first_command`, comments removed."""
    for match in re.finditer(r"```sh\n(.*?)```", README, re.S):
        lines = [line.split("  #")[0].strip() for line in match.group(1).splitlines()]
        if lines and lines[0].startswith(first_command):
            return lines
    raise AssertionError(f"no README sh block starts with {first_command!r}")


def env_for(prefix: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "TWENTY_JOBS_PREFIX": prefix}
    env.pop("REDIS_QUEUE_URL", None)
    env.pop("PYTHONPATH", None)
    return env


def run_shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.run(command, shell=True, capture_output=True, text=True, cwd=cwd, timeout=60,
                          env={**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"})


async def test_the_handler_example_runs_and_leaves_no_failed_job(
    tmp_path: Path, prefix: str, redis: aioredis.Redis
) -> None:
    (tmp_path / "my_jobs.py").write_text(code_block("# my_jobs.py"))
    work, enqueue = shell_lines("twenty-jobs work --import my_jobs")
    env = env_for(prefix)
    added = run_shell(enqueue, tmp_path, env)
    assert added.returncode == 0, added.stderr
    ran = run_shell(f"{work} --burst", tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    job_id = added.stdout.strip()
    assert json.loads(await redis.hget(f"{prefix}:workspace-queue:{job_id}", "returnvalue") or "") == {"synced": 42}
    assert await redis.zcard(f"{prefix}:workspace-queue:failed") == 0
    assert await redis.zcard(f"{prefix}:workspace-queue:completed") == 2  # the job and the AfterSyncJob it adds


async def test_the_producer_example_runs_as_pasted(tmp_path: Path, prefix: str, redis: aioredis.Redis) -> None:
    (tmp_path / "enqueue_jobs.py").write_text(code_block("# enqueue_jobs.py: python enqueue_jobs.py"))
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "enqueue_jobs.py"], capture_output=True,
                                  text=True, cwd=tmp_path, env=env_for(prefix), timeout=60)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[0]
    assert job_id.startswith("trash-")
    assert await redis.exists(f"{prefix}:workspace-queue:{job_id}")
    assert await redis.zcard(f"{prefix}:webhook-queue:prioritized") == 2
