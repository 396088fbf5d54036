# The two commands a new user needs: `make run` and `make test`.
# Everything else here is set-up they trigger (idempotent, keyed on the lock files).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.stamp-pyproject
STAMP_NODE := node_modules/.stamp-lock

.PHONY: run demo test setup typecheck contracts bench clean

run: setup
	$(VENV)/bin/zkid up

demo: setup
	$(VENV)/bin/zkid demo

test: setup
	$(PY) -m mypy
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# npm ci checks every tarball against the integrity hashes in package-lock.json.
$(STAMP_NODE): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

typecheck: setup
	$(PY) -m mypy

contracts: setup
	$(PY) scripts/build_contracts.py

bench: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache
