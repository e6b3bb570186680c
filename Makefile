# The two commands of the README:
#   make run   -- set everything up, then run the main job (default run + report)
#   make test  -- set everything up, then run the test suite
.PHONY: setup run test test-fast bench lint
VENV := .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m experiments.main $(ARGS)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) -m experiments.bench $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
