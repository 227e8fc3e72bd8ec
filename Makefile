# twenty-jobs developer tasks. `make test` is what CI runs (.ci/run); it installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.install-stamp
NODE_STAMP := node_fixture/node_modules/.install-stamp

.PHONY: install services test test-fast lint interop interop-matrix chaos fuzz bench clean

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

services:
	bash scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check twenty_jobs tests interop_tests benchmarks
	$(BIN)/mypy

test: install services lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests interop_tests

test-fast: install services
	$(BIN)/python -m pytest -q -x -p no:cacheprovider tests -m "not slow"

interop: install services
	$(BIN)/python -m pytest -q -p no:cacheprovider interop_tests

# The interop suite against each Node bullmq in node_fixture: Twenty's 5.40.0, the latest 5.x, 6.4.x.
interop-matrix: install services
	@set -e; for v in 5.40.0 5-latest 6.4; do \
	  echo "=== node bullmq $$v ==="; \
	  TWENTY_JOBS_NODE_BULLMQ=$$v $(BIN)/python -m pytest -q -p no:cacheprovider interop_tests || exit 1; \
	done

chaos: install services
	TWENTY_JOBS_CHAOS_FULL=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests -m chaos

# The long fuzz run over broken job hashes (docs/fuzz.md): FUZZ_CASES (default 1000), FUZZ_SEED
# (default: a fresh one, printed), FUZZ_LAYOUT=mixed|kind|both (default mixed), FUZZ_ONLY=3,17.
fuzz: install services
	FUZZ_LONG=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/fuzz/test_fuzz_worker.py

bench: install services
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) node_fixture/node_modules .pytest_cache .mypy_cache .ruff_cache
