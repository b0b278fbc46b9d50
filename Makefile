# The README's commands: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast dev bench lint lock reliability model model-full

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when the project's dependencies change. Versions come from requirements.lock
# (made by `make lock`), so every machine installs what CI tested; the embedded extra brings the
# PostgreSQL binaries that `make run` and the tests start when no server is named.
$(STAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m tools.launcher run

# Two workers: most tests wait on real processes (daemon ticks, leases), and each test file runs
# in one worker so its module fixtures (a daemon, a webserver) start once. Three workers beside
# the tick scenarios' daemons ran the shared server out of its 100 connections. The model
# checks come after, on both cores: SPIN's CPU beside the daemons made both miss their bounds.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not model"
	$(BIN)/python -m pytest -n 2 -m model

# Seconds, no PostgreSQL: the tests in tests/unit.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The UI's port: `make dev PORT=3001` beside another one.
PORT ?= 3000

# The reliability scenarios alone (about ten minutes), then RELIABILITY.md's table from what
# they saw.
reliability: $(STAMP)
	RELIABILITY_FIGURES=reliability/figures.json $(BIN)/python -m pytest -m scenario
	$(BIN)/python -m tools.reliability_report

dev: $(STAMP)
	$(BIN)/python -m tools.launcher dev --port $(PORT)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# What CI checks first: lint, format and types.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# After changing a dependency in pyproject.toml: pin every package again.
lock: $(BIN)/python
	$(BIN)/python -m pip install -q pip-tools
	$(BIN)/pip-compile -q --extra dev --extra embedded --strip-extras --no-emit-index-url \
		--no-emit-find-links --allow-unsafe -o requirements.lock pyproject.toml

# The protocol's model (model/dlock.pml) in SPIN: the exhaustive checks (state counts, times),
# liveness under weak fairness, every buggy variant's counterexample, every reachability
# witness. Needs spin and gcc. model-full: the larger bounds, about ten minutes and 10 GB each.
model:
	$(PYTHON) -m model.run all

model-full:
	$(PYTHON) -m model.run full
