# twenty-jobs developer tasks. `make test` is what CI runs (.ci/run); it installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.install-stamp
NODE_STAMP := node_fixture/node_modules/.install-stamp

# Some machines set PYTHONDONTWRITEBYTECODE=1; then every `twenty-jobs` process (the tests start
# hundreds) compiles the package from source again, about 0.3 s each. Bytecode goes to the
# git-ignored __pycache__ directories.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run services test test-fast lint lint-deploy interop interop-matrix chaos fuzz bench clean

install: $(PY_STAMP) $(NODE_STAMP)

# Re-installs only when pyproject.toml changes, so the second run is instant.
$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): node_fixture/package.json node_fixture/package-lock.json
	cd node_fixture && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The first command for a newcomer: install, start a local Redis on 127.0.0.1:6379 if none answers
# (Debian's redis-server; installed when absent), then run the workers. `make run ARGS="--burst"`.
run: install
	bash scripts/ensure-services.sh redis
	$(BIN)/twenty-jobs work $(ARGS)

services:
	bash scripts/ensure-services.sh

lint: install lint-deploy
	$(BIN)/ruff check twenty_jobs tests interop_tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# The image, compose files, Kubernetes manifests and CI workflow, checked offline (no container
# engine runs here): hadolint, the vendored Compose and GitHub-workflow JSON schemas, and the
# Kubernetes schemas that kubernetes-validate ships (docs/deploy.md).
K8S_VERSION := 1.30.0
lint-deploy: install
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml deploy/compose.shared-queue.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml
	$(BIN)/kubernetes-validate --kubernetes-version $(K8S_VERSION) --strict --quiet deploy/k8s/*.yaml deploy/k8s/optional/*.yaml

test: install services lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests interop_tests

test-fast: install services
	$(BIN)/python -m pytest -q -x -p no:cacheprovider tests -m "not slow"

# The fixed Node bullmq builds in node_fixture (lib/bullmq.js selectors): Twenty's old pin 5.40.0,
# current Twenty's pin 5.78.0, the latest 5.x, 6.4.x (the Lua the Python port ships), 6.7.x (newest).
NODE_BULLMQ_MATRIX := 5.40.0 5.78.0 5-latest 6.4 6.7
# `make interop NODE_BULLMQ=<any published version>` installs that bullmq on the fly under
# node_fixture/.custom/ and runs the suite on it; a matrix selector needs no install.
NODE_BULLMQ ?=

interop: install services
ifneq ($(strip $(NODE_BULLMQ)),)
ifeq ($(filter $(NODE_BULLMQ),$(NODE_BULLMQ_MATRIX)),)
	bash scripts/install-node-bullmq.sh $(NODE_BULLMQ)
endif
	TWENTY_JOBS_NODE_BULLMQ=$(NODE_BULLMQ) $(BIN)/python -m pytest -q -p no:cacheprovider interop_tests
else
	$(BIN)/python -m pytest -q -p no:cacheprovider interop_tests
endif

# The interop suite against every build of the matrix; runs them all, then fails if any failed.
interop-matrix: install services
	@failed=""; for v in $(NODE_BULLMQ_MATRIX); do \
	  echo "=== node bullmq $$v ==="; \
	  TWENTY_JOBS_NODE_BULLMQ=$$v $(BIN)/python -m pytest -q -p no:cacheprovider interop_tests || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "interop failed on node bullmq:$$failed"; exit 1; fi

chaos: install services
	TWENTY_JOBS_CHAOS_FULL=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests -m chaos

# The long fuzz run over broken job hashes (docs/fuzz.md): FUZZ_CASES (default 1000), FUZZ_SEED
# (default: a fresh one, printed), FUZZ_LAYOUT=mixed|kind|both (default mixed), FUZZ_ONLY=3,17.
fuzz: install services
	FUZZ_LONG=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/fuzz/test_fuzz_worker.py

# `make bench` runs the default scenarios (10-15 minutes on 2 cores); BENCH_ARGS passes options
# (e.g. BENCH_ARGS="--quick" or "--scenarios drain,webhook --reps 5"). PEERS=1 adds arq and saq, in
# their own venv: arq pins redis-py < 6, which the project's venv cannot have.
PEERS ?=
BENCH_ARGS ?=
PEERS_VENV := .venv-peers

bench: install services
ifeq ($(PEERS),1)
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet 'arq==0.28.0' 'saq[redis]==0.26.4' typing_extensions
	$(BIN)/python -m benchmarks.run --peers --peers-venv $(PEERS_VENV) $(BENCH_ARGS)
else
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
endif

clean:
	rm -rf $(VENV) $(PEERS_VENV) node_fixture/node_modules node_fixture/.custom .pytest_cache .mypy_cache .ruff_cache
