# The README's two commands: `make demo` and `make test`. Both create the venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit mutants clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check crypto consensus contracts genesis ledger tests
	$(BIN)/ruff format --check crypto consensus contracts genesis ledger tests

typecheck: $(STAMP)
	$(BIN)/mypy crypto consensus contracts genesis ledger

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# Named mutations of the safety checks, each with the tests that must kill it
# (tests/mutants/table.py); exits non-zero unless every one is killed. See docs/RELIABILITY.md.
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants.run

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m ledger.cli.demo

clean:
	rm -rf $(VENV) demo-testnet .pytest_cache .mypy_cache .ruff_cache
