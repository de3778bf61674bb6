# chisme: `make run` starts a node on embedded defaults; `make test` runs the whole suite.
# Both install from the lock files in requirements/ (exact versions and hashes); `make lock`
# regenerates them from pyproject.toml's ranges.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
UV_VERSION := 0.13.9
# Flags passed through to `chisme node`, e.g. make run ARGS='--tracker-http 127.0.0.1:6970'
ARGS ?=

.PHONY: run test lint typecheck layers unit bench lock test-newest test-oldest clean venv

$(BIN)/python:
	@$(PY) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing Debian's python3-venv" >&2; \
	  (apt-get update -qq && apt-get install -y -qq python3-venv) >&2 && $(PY) -m venv $(VENV); }

# chisme itself is installed without build isolation, from the locked setuptools and wheel
define install_lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(1)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
endef

$(RUN_STAMP): $(BIN)/python requirements/run.txt pyproject.toml
	$(call install_lock,requirements/run.txt)
	@touch $@

$(TEST_STAMP): $(BIN)/python requirements/test.txt pyproject.toml
	$(call install_lock,requirements/test.txt)
	@touch $@ $(RUN_STAMP)

venv: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/chisme node $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

layers: $(TEST_STAMP)
	$(BIN)/lint-imports

unit: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck layers unit

bench: $(TEST_STAMP)
	$(BIN)/python bench/run_all.py $(ARGS)

# Regenerate the locks from pyproject.toml's ranges (the newest releases they allow).
lock: $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --generate-hashes \
	  pyproject.toml requirements/build.in -o requirements/run.txt
	$(BIN)/uv pip compile -q --universal --python-version 3.11 --generate-hashes --extra test \
	  pyproject.toml requirements/build.in -o requirements/test.txt

# The suite against the newest releases the ranges allow, outside the lock (own venv).
test-newest:
	rm -rf .venv-newest && $(PY) -m venv .venv-newest
	.venv-newest/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	.venv-newest/bin/python -m pip install -q --disable-pip-version-check --upgrade \
	  --upgrade-strategy eager -e '.[test]'
	.venv-newest/bin/python -m pip freeze --exclude-editable | grep -iE '^(msgspec|httptools|uvloop|prometheus.client|fastbencode|cryptography|hypothesis|pytest|libtorrent)=='
	.venv-newest/bin/python -m pytest -q -p no:cacheprovider

# The suite with the oldest releases of chisme's own dependencies that the ranges allow
# (test tools from the lock).
test-oldest: $(BIN)/python
	rm -rf .venv-oldest && $(PY) -m venv .venv-oldest
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip compile -q --python-version 3.11 --resolution lowest-direct --no-header \
	  pyproject.toml -o .venv-oldest/oldest.txt
	.venv-oldest/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
	  --no-deps -r requirements/test.txt
	.venv-oldest/bin/python -m pip install -q --disable-pip-version-check -r .venv-oldest/oldest.txt
	.venv-oldest/bin/python -m pip install -q --disable-pip-version-check --no-deps \
	  --no-build-isolation -e .
	.venv-oldest/bin/python -m pip freeze --exclude-editable | grep -iE '^(msgspec|httptools|uvloop|prometheus.client|fastbencode|cryptography)=='
	.venv-oldest/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-newest .venv-oldest build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
