# toggler — every target does its own set-up. `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
SYNAPSE_VENV := $(CACHE)/synapse-venv
export TOGGLER_SYNAPSE_PYTHON := $(abspath $(SYNAPSE_VENV))/bin/python

.PHONY: venv synapse test lint typecheck unit demo bench schema docs clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

synapse: $(SYNAPSE_VENV)/.installed
$(SYNAPSE_VENV)/.installed:
	$(PY) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install -q matrix-synapse authlib synapse-token-authenticator
	touch $@

lint: venv
	$(BIN)/ruff check toggler tests bench

typecheck: venv
	$(BIN)/mypy --strict toggler

test: venv synapse
	$(BIN)/ruff check toggler tests bench
	$(BIN)/mypy --strict toggler
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

schema: venv
	$(BIN)/toggler schema > schemas/toggler.schema.json

demo: venv synapse
	$(BIN)/toggler demo $(ARGS)

bench: venv synapse
	$(BIN)/python bench/status_scale.py
	$(BIN)/python bench/roundtrip.py

clean:
	rm -rf $(VENV) $(CACHE) .demo .mypy_cache .ruff_cache .pytest_cache

docs: venv
	$(BIN)/python -m toggler.configdoc README.md
