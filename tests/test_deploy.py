"""The deployment files: what can be proven without a container engine or a cluster.

The image's two pip steps run here as the Dockerfile spells them (read from the file, so the two
cannot drift apart), into a fresh virtualenv; its ENTRYPOINT, CMD and HEALTHCHECK then run from
that virtualenv against the local Redis. The compose files, Kubernetes manifests and CI workflow
are checked for the promises their comments make (schemas are `make lint-deploy`'s job).
`docker build` itself is not run (docs/deploy.md).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REDIS_URL

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


# -- the Dockerfile --------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), " ".join(args.split())))
    return stages


def instruction(stage: list[tuple[str, str]], keyword: str, containing: str = "") -> str:
    found = [args for kw, args in stage if kw == keyword and containing in args]
    assert found, f"no {keyword} {containing!r} in the Dockerfile stage"
    return found[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_the_image_is_multi_stage_slim_non_root_with_an_exec_form_entrypoint() -> None:
    builder, final = dockerfile_stages()
    assert instruction(builder, "FROM").endswith("AS builder")
    assert "slim" in instruction(final, "FROM")
    # The final stage installs from the builder's wheels and compiles nothing.
    assert "from=builder" in instruction(final, "RUN", "pip install")
    assert not any(kw == "RUN" and re.search(r"apt-get|gcc|build-essential", args) for kw, args in final)
    user = instruction(final, "USER").split(":")[0]
    assert user not in ("0", "root")
    assert exec_form(instruction(final, "ENTRYPOINT")) == ["twenty-jobs"]
    health = instruction(final, "HEALTHCHECK")
    assert "--this-host" in exec_form(health.partition(" CMD ")[2])


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_the_images_install_steps_give_a_working_entrypoint_and_healthcheck(tmp_path: Path, prefix: str) -> None:
    builder, final = dockerfile_stages()
    # The build context as the builder stage sees it: only what it COPYs.
    src = tmp_path / "src"
    src.mkdir()
    for kw, args in builder:
        if kw == "COPY":
            *sources, _ = args.split()
            for source in sources:
                origin = REPO / source
                if origin.is_dir():
                    shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(origin, src / source)
    wheels = tmp_path / "wheels"

    # Builder: `pip wheel ...` as written, into our folder. --no-cache-dir only keeps the image
    # small; here the cache saves downloading every dependency on each run.
    build = shlex.split(instruction(builder, "RUN", "pip wheel"))
    build = [str(wheels) if arg == "/wheels" else arg for arg in build if arg != "--no-cache-dir"]
    assert build[:2] == ["pip", "wheel"]
    run([sys.executable, "-m", *build], cwd=src)

    # Runtime: a fresh virtualenv stands for the slim image; `pip install ...` as written.
    target = tmp_path / "image"
    venv.create(target, with_pip=True)
    install = [arg for arg in shlex.split(instruction(final, "RUN", "pip install")) if not arg.startswith("--mount")]
    assert install[:2] == ["pip", "install"] and "--no-index" in install
    expanded: list[str] = []
    for arg in install[2:]:
        expanded += sorted(glob.glob(str(wheels) + arg[len("/wheels"):])) if arg.startswith("/wheels") else [arg]
    run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", *expanded], cwd=tmp_path)

    # What the container runs, resolved on the virtualenv's PATH, with nothing of the repository
    # in sight (WORKDIR is an empty folder; no PYTHONPATH).
    app = tmp_path / "app"
    app.mkdir()
    env = {"PATH": f"{target / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path), "REDIS_URL": REDIS_URL,
           "TWENTY_JOBS_PREFIX": prefix, "LANG": "C.UTF-8"}
    location = run(["python", "-c", "import twenty_jobs; print(twenty_jobs.__file__)"], cwd=app, env=env)
    assert location.startswith(str(target))
    entrypoint = exec_form(instruction(final, "ENTRYPOINT"))
    assert run([*entrypoint, "--version"], cwd=app, env=env).startswith("twenty-jobs ")
    assert "--this-host" in run([*entrypoint, "check", "--help"], cwd=app, env=env)

    healthcheck = exec_form(instruction(final, "HEALTHCHECK").partition(" CMD ")[2])
    before = subprocess.run(healthcheck, cwd=app, env=env, capture_output=True, text=True, timeout=60)
    assert before.returncode == 1 and "no twenty-jobs worker on host" in before.stdout

    worker = subprocess.Popen([*entrypoint, *exec_form(instruction(final, "CMD"))], cwd=app, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            check = subprocess.run(healthcheck, cwd=app, env=env, capture_output=True, text=True, timeout=60)
            if check.returncode == 0:
                break
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, check.stdout + check.stderr
            time.sleep(0.5)
        assert check.stdout.startswith("healthy:")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err


# -- compose -------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def test_compose_splits_the_queues_between_twentys_worker_and_twenty_jobs() -> None:
    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    assert {"server", "worker", "db", "redis", "twenty-jobs"} <= set(services)
    worker, jobs = services["worker"], services["twenty-jobs"]
    assert worker["image"].startswith("twentycrm/twenty:") and worker["command"] == ["yarn", "worker:prod"]
    served = option_values(jobs["command"], "--queue")
    assert served and worker["environment"]["WORKER_EXCLUDED_QUEUES"].split(",") == served
    # One .env: both workers build the same Redis and PostgreSQL URLs from the same variables.
    for name in ("REDIS_URL", "PG_DATABASE_URL"):
        assert jobs["environment"][name] == worker["environment"][name]
    assert "WORKER_EXCLUDED_QUEUES" not in jobs["environment"]  # twenty-jobs would obey it too
    grace = float(option_values(jobs["command"], "--grace")[0])
    assert seconds(jobs["stop_grace_period"]) > grace
    assert jobs["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "noeviction" in services["redis"]["command"]


def test_compose_shared_queue_mode_keeps_twentys_worker_on_every_queue_and_leaves_unknown_jobs() -> None:
    base = load_yaml(DEPLOY / "compose.yaml")["services"]
    shared = load_yaml(DEPLOY / "compose.shared-queue.yaml")["services"]
    assert shared["worker"]["environment"]["WORKER_EXCLUDED_QUEUES"] == ""
    command = shared["twenty-jobs"]["command"]
    assert option_values(command, "--unknown-jobs") == ["leave"]
    assert option_values(command, "--queue") == option_values(base["twenty-jobs"]["command"], "--queue")
    assert option_values(command, "--grace") == option_values(base["twenty-jobs"]["command"], "--grace")


# -- Kubernetes ----------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_the_deployment_outlives_the_drain_and_probes_what_the_worker_serves() -> None:
    k8s = manifests()
    assert {"Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= set(k8s)
    deployment = k8s["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "work"
    assert pod["terminationGracePeriodSeconds"] > float(option_values(args, "--grace")[0])
    metrics_port = int(option_values(args, "--metrics-port")[0])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz" and ports[liveness["port"]] == metrics_port
    readiness = container["readinessProbe"]["exec"]["command"]
    assert readiness[:3] == ["twenty-jobs", "check", "--this-host"]
    # The exec probe must be allowed to finish its own Redis timeout.
    timeout = float(option_values(readiness, "--timeout")[0])
    assert container["readinessProbe"]["timeoutSeconds"] > timeout
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    refs = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {"configMapRef": k8s["ConfigMap"]["metadata"]["name"],
                    "secretRef": k8s["Secret"]["metadata"]["name"]}
    assert "REDIS_URL" in k8s["ConfigMap"]["data"] and "PG_DATABASE_URL" in k8s["Secret"]["stringData"]


def test_the_disruption_budget_and_autoscaler_point_at_the_deployment() -> None:
    k8s = manifests()
    deployment = k8s["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = k8s["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = k8s["HorizontalPodAutoscaler"]["spec"]["metrics"]
    # A series the workers' /metrics really serves.
    from twenty_jobs.observability.telemetry import QUEUE_BY_STATE_GAUGE

    assert metric["external"]["metric"]["name"] == QUEUE_BY_STATE_GAUGE
    namespaces = {doc["metadata"]["namespace"] for doc in k8s.values()}
    assert len(namespaces) == 1


# -- CI ------------------------------------------------------------------------------------------


def test_the_ci_workflow_runs_make_test_and_the_interop_matrix_on_the_tests_services() -> None:
    workflow = load_yaml(REPO / ".github" / "workflows" / "ci.yml")
    (job,) = workflow["jobs"].values()
    assert set(job["strategy"]["matrix"]["target"]) == {"test", "interop-matrix"}
    assert any(step.get("run") == "make ${{ matrix.target }}" for step in job["steps"])
    services = job["services"]
    assert services["redis"]["ports"] == ["6379:6379"] and REDIS_URL.endswith(":6379")
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["postgres"]["env"] == {"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"}
    versions = {step["uses"].split("@")[0]: step.get("with", {}) for step in job["steps"] if "uses" in step}
    assert versions["actions/setup-python"]["python-version"] == "3.11"
    assert versions["actions/setup-node"]["node-version"] == "20"
