# The README's two commands: `make demo` and `make test`. Both create the venv if missing.
#
# The venv holds exactly the locked versions. requirements.lock pins what the package needs
# at run time, requirements-dev.lock the test and build tools on top of it; both pin every
# package with its hashes, for every supported Python (3.11 and newer, any platform). Plain
# pip installs them in --require-hashes mode, then the project itself, editable, with
# --no-deps --no-build-isolation, so nothing unlocked slips in, not even a build backend.
# No lock tool is needed to install; `make lock` (uv, itself pinned in the dev lock)
# refreshes both locks from the ranges in pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
WHEELHOUSE := $(VENV)/wheelhouse
LOCKED := $(VENV)/.locked
STAMP := $(VENV)/.installed
DEV_LOCK := requirements-dev.lock
RUNTIME_LOCK := requirements.lock
# `make lock` upgrades every pin to the newest release pyproject allows; override, e.g.
# `make lock LOCK_FLAGS=` (keep the pins, add what pyproject gained) or
# `make lock LOCK_FLAGS="--upgrade-package httpx"`.
LOCK_FLAGS ?= --upgrade
LOCK_PYTHON := 3.11
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version $(LOCK_PYTHON) \
	--generate-hashes --quiet --custom-compile-command "make lock" $(LOCK_FLAGS)

.PHONY: demo test lint typecheck unit browser mutants dist lock clean

# A new venv for every new lock: it then holds the locked set and nothing else. The wheels
# are downloaded once into the wheelhouse (hash-checked) and installed from there; the
# wheel test (tests/test_release.py) installs requirements.lock from it without a network.
$(LOCKED): $(RUNTIME_LOCK) $(DEV_LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) download --quiet --require-hashes --no-deps -d $(WHEELHOUSE) \
		-r $(RUNTIME_LOCK) -r $(DEV_LOCK)
	$(PIP) install --quiet --require-hashes --no-deps --no-index --find-links $(WHEELHOUSE) \
		-r $(RUNTIME_LOCK) -r $(DEV_LOCK)
	touch $(LOCKED)

$(STAMP): $(LOCKED) pyproject.toml
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check || { echo "the locks do not satisfy pyproject.toml: run 'make lock'"; exit 1; }
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check crypto consensus contracts genesis ledger tests
	$(BIN)/ruff format --check crypto consensus contracts genesis ledger tests

typecheck: $(STAMP)
	$(BIN)/mypy crypto consensus contracts genesis ledger

unit: $(STAMP) browser
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# The block explorer is tested in a real browser (tests/integration/test_observe.py):
# Debian's headless Chromium, installed here when missing (as root, or through sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
		$$sudo apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends chromium \
		|| { echo "the explorer test needs Chromium: apt-get install chromium"; exit 1; }; }

# Named mutations of the safety checks, each with the tests that must kill it
# (tests/mutants/table.py); exits non-zero unless every one is killed. See docs/RELIABILITY.md.
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants.run

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m ledger.cli.demo

# A release: dist/quorum_ledger-VERSION.tar.gz and -py3-none-any.whl, built with the
# locked setuptools (no isolation, so no unlocked build backend is fetched).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

# Refresh both locks from pyproject.toml's ranges (needs the registry). The runtime lock
# first; the dev lock is resolved together with it (-c) and leaves out what it already
# pins, so the two never disagree on a version and install side by side.
lock: $(LOCKED)
	$(UV_COMPILE) -o $(RUNTIME_LOCK)
	$(UV_COMPILE) --extra test --group release -c $(RUNTIME_LOCK) -o $(DEV_LOCK) \
		$$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' $(RUNTIME_LOCK))

clean:
	rm -rf $(VENV) dist build *.egg-info demo-testnet .pytest_cache .mypy_cache .ruff_cache
