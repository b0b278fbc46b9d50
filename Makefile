# The README's commands: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test dev bench lint model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m orchestration.launcher run

test: $(STAMP)
	$(BIN)/python -m pytest

dev: $(STAMP)
	$(BIN)/python -m orchestration.launcher dev

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check .

# The protocol's model (model/dlock.pml) in SPIN: the exhaustive checks (state counts, times),
# every buggy variant's counterexample, every reachability witness. Needs spin and gcc.
model:
	$(PYTHON) -m model.run all
