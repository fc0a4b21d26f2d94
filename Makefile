# One command each: `make demo` (set up + main job), `make test` (set up + test suite).
# Both create or reuse .venv in the repository root and are safe to run twice.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# torch is pinned to the CPU wheel (constraints.txt); /opt/wheels holds it on our machines.
FIND    := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP     := $(BIN)/python -m pip install -q -c constraints.txt $(FIND)

.PHONY: setup demo test clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/gnsched demo --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
