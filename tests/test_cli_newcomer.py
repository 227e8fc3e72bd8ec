"""A newcomer's first hour (issue 9): what the CLI shows and suggests, end to end on the real Redis."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL, wait_until
from tests.test_cli_ops import StartWorker, acli, cli, lines, runner
from twenty_jobs.cli.app import app
from twenty_jobs.cli.output import carry_prefix, shorten
from twenty_jobs.errors import PermanentJobError
from twenty_jobs.runtime.context import JobContext
from twenty_jobs.runtime.producer import Producer
from twenty_jobs.runtime.registry import Registry, job

REPO = Path(__file__).resolve().parent.parent


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REDIS_URL": REDIS_URL}
    env.pop("REDIS_QUEUE_URL", None)
    return env


# -- status, hints ---------------------------------------------------------------------------------


async def test_status_shows_a_queue_paused_by_twenty_jobs_pause(producer: Producer, prefix: str) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})
    paused = await acli(prefix, "pause", "email-queue")
    assert paused.exit_code == 0, paused.output
    table = await acli(prefix, "status")
    assert table.exit_code == 0, table.output
    assert "email-queue [paused]" in table.output


def test_work_on_an_unknown_queue_suggests_what_work_accepts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twenty_jobs.cli", "work", "--queue", "my-queue", "--no-builtin-jobs"],
        capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=60,
    )
    assert out.returncode == 2
    assert "--custom-queue" not in out.stderr  # `work` has no such option
    assert "declare a handler for it" in out.stderr and "--import" in out.stderr


async def test_retry_into_a_paused_queue_suggests_twenty_jobs_resume_with_the_prefix(
    redis: aioredis.Redis, prefix: str
) -> None:
    assert (await acli(prefix, "pause", "workflow-queue")).exit_code == 0
    refused = await acli(prefix, "failed", "retry", "workflow-queue", "--all")
    assert refused.exit_code == 2
    assert f"`twenty-jobs resume workflow-queue --prefix {prefix}`" in refused.output


async def test_check_and_doctor_fix_hints_keep_the_prefix(producer: Producer, prefix: str) -> None:
    await producer.add("email-queue", "EmailSenderJob", {})  # ready, and no worker anywhere
    check = await acli(prefix, "check")
    assert check.exit_code == 1
    assert f"`twenty-jobs work --queue email-queue --prefix {prefix}`" in check.output
    doctor = await acli(prefix, "doctor")
    assert doctor.exit_code == 1
    assert f"`twenty-jobs work --queue email-queue --prefix {prefix}`" in doctor.output


def test_hints_for_the_default_prefix_stay_as_they_are() -> None:
    text = "start one (`twenty-jobs work --queue q`)"
    assert carry_prefix(text, "bull") == text
    assert carry_prefix(text, "p1") == "start one (`twenty-jobs work --queue q --prefix p1`)"
    assert carry_prefix("`twenty-jobs status --prefix x`", "p1") == "`twenty-jobs status --prefix x`"


# -- failed list -----------------------------------------------------------------------------------


def test_shorten_cuts_at_a_word_boundary_with_an_ellipsis() -> None:
    assert shorten("short reason", 120) == "short reason"
    assert shorten("first line\nsecond line", 120) == "first line"
    cut = shorten("connection refused by the remote webhook receiver at example", 30)
    assert cut == "connection refused by the…" and len(cut) <= 30
    assert shorten("x" * 50, 20) == "x" * 19 + "…"  # one long word: cut where it is
    assert shorten("", 10) == ""


async def test_failed_list_shortens_reasons_on_words_and_honours_columns_when_piped(
    start_worker: StartWorker, registry: Registry, producer: Producer, redis: aioredis.Redis,
    prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = "workflow-queue"
    reason = "lorem " * 40 + "END"

    @job(queue, "Doomed", registry=registry)
    async def doomed(data: Any, ctx: JobContext) -> None:
        raise PermanentJobError(reason)

    await producer.add(queue, "Doomed", {})
    await start_worker([queue])
    await wait_until(lambda: _failed(redis, f"{prefix}:{queue}:failed"))

    monkeypatch.setenv("COLUMNS", "72")
    table = await acli(prefix, "failed", "list", queue)
    assert table.exit_code == 0, table.output
    assert max(len(line) for line in table.output.splitlines()) <= 72
    text = " ".join(table.output.split())
    assert re.search(r"\blorem…", text), table.output
    assert not re.search(r"\b(?!lorem)\w+…", text)  # no word cut in two
    assert "END" not in text
    full = json.loads((await acli(prefix, "failed", "list", queue, "--json")).output)
    assert full["jobs"][0]["failed_reason"] == reason


async def _failed(redis: aioredis.Redis, key: str) -> bool:
    return int(await redis.zcard(key)) == 1


# -- cron, help ------------------------------------------------------------------------------------


def test_cron_list_shows_nodes_iteration_count_not_runs(prefix: str) -> None:
    assert cli(prefix, "cron", "add", "cron-queue", "NeverRanJob", "--every", "3600000").exit_code == 0
    table = cli(prefix, "cron", "list")
    assert table.exit_code == 0
    header = next(line for line in lines(table) if "next run" in line)
    assert "iterations" in header and "runs" not in header


HELP_SCREENS = [
    [], ["work"], ["enqueue"], ["pause"], ["resume"], ["status"], ["check"], ["doctor"],
    ["failed"], ["failed", "list"], ["failed", "retry"], ["failed", "clean"],
    ["cron"], ["cron", "list"], ["cron", "add"], ["cron", "remove"], ["cron", "register"],
]


@pytest.mark.parametrize("command", HELP_SCREENS, ids=lambda c: " ".join(c) or "root")
def test_help_shows_no_type_after_flags(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "Usage: " in result.output


# -- the worker process ----------------------------------------------------------------------------


def test_the_worker_says_which_redis_and_prefix_it_serves_and_when_it_stops(prefix: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twenty_jobs.cli", "work", "--import", "tests.cli_handlers", "--no-builtin-jobs",
         "--burst", "--prefix", prefix],
        capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=60,
    )
    assert out.returncode == 0, out.stderr
    logged = out.stderr.strip().splitlines()
    assert f"starting on Redis {REDIS_URL}, prefix '{prefix}'" in logged[0]
    assert "twenty-jobs worker stopped (exit code 0)" in logged[-1]


def test_import_finds_a_module_in_the_current_directory(tmp_path: Path, prefix: str) -> None:
    script = Path(sys.executable).parent / "twenty-jobs"
    if not script.exists():
        pytest.skip("the twenty-jobs console script is not installed (make install)")
    (tmp_path / "my_jobs.py").write_text(
        "import twenty_jobs\n\n"
        "@twenty_jobs.job(queue='workspace-queue', name='HereJob')\n"
        "async def here(data):\n"
        "    return data\n"
    )
    env = {k: v for k, v in cli_env().items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(script), "work", "--import", "my_jobs", "--no-builtin-jobs", "--burst", "--prefix", prefix],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "serving workspace-queue" in out.stderr and "HereJob" in out.stderr


# -- layers ----------------------------------------------------------------------------------------


def test_nothing_in_the_package_imports_the_cli() -> None:
    package = REPO / "twenty_jobs"
    offenders = []
    for path in package.rglob("*.py"):
        if (package / "cli") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            if any(n == "twenty_jobs.cli" or n.startswith("twenty_jobs.cli.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_make_install_prints_no_editable_install_warning(tmp_path: Path) -> None:
    """`pip install -e .` as `make install` runs it, into a throwaway environment."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-e",
         str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Editable installation" not in out.stdout + out.stderr
    assert "Please be careful" not in out.stdout + out.stderr
