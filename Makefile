# The two commands of the README:
#   make run   -- set everything up, then run the main job (default run + report)
#   make test  -- set everything up, then run the test suite
.PHONY: setup run test test-fast bench lint
VENV := .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/setup.sh

# PYTHONHASHSEED=0: RLlib orders each batch's agents by iterating sets of agent ids, so a
# training is the same across processes only with a fixed string-hash seed (agents/hashseed.py)
run: setup
	PYTHONHASHSEED=0 $(PY) -m experiments.main $(ARGS)

test: setup
	PYTHONHASHSEED=0 $(PY) -m pytest -q

test-fast: setup
	PYTHONHASHSEED=0 $(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) -m experiments.bench $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
