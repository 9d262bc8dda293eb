# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PURE   := engine/errors.py engine/spec engine/expr engine/workflows \
          $(wildcard engine/events/*.py)

.PHONY: demo demo-events test lint typecheck layers unit conformance bench crds sysdeps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Host tools the local runtime uses when present (bubblewrap gives steps their own /tmp and mounts).
# Installed when we can (root + apt); the runtime falls back and says so when they are missing.
sysdeps:
	@scripts/install-sysdeps.sh

demo: $(STAMP) sysdeps
	SLUICE_HOME=$${SLUICE_HOME:-$$(mktemp -d)} $(VENV)/bin/sluice run examples/workflows/hello-world.yaml --watch
	SLUICE_HOME=$${SLUICE_HOME:-$$(mktemp -d)} $(VENV)/bin/sluice run examples/workflows/dag-diamond.yaml --watch

# A webhook `curl` starts a workflow: sluice server with the EventSource and Sensor of examples/events/.
demo-events: $(STAMP) sysdeps
	scripts/demo-events.sh

LINTED := $(wildcard engine tests benchmarks)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict $(PURE)
	$(VENV)/bin/mypy engine

layers: $(STAMP)
	$(VENV)/bin/lint-imports

unit: $(STAMP) sysdeps
	$(PY) -m pytest -q

test: lint typecheck layers unit

# engine/spec is the one source of the CRDs. deploy/crds/ holds the same bytes because kustomize loads
# no file from outside deploy/; tests fail when either copy drifts from the models.
crds: $(STAMP)
	$(VENV)/bin/sluice crds --dir crds
	$(VENV)/bin/sluice crds --dir deploy/crds

conformance: $(STAMP) sysdeps
	$(PY) -m tests.conformance.run

bench: $(STAMP) sysdeps
	$(PY) benchmarks/core_scale.py
	$(PY) benchmarks/local_dag.py
	$(PY) benchmarks/operator_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
