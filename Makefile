# Keep — developer entry points. `make demo` and `make test` work on a fresh
# Debian machine with Python 3.11; both create .venv and install what they need.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Every install is pinned by constraints.txt (refreshed deliberately: `make constraints`).
# The compiled tree decoder is built by the install: a change to it reinstalls.
HASH   := $(shell cat pyproject.toml constraints.txt setup.py src/keep/protocol/_nodes.c | sha256sum | cut -c1-12)
DEMO_STAMP := $(VENV)/.demo-$(HASH)
TEST_STAMP := $(VENV)/.test-$(HASH)

.PHONY: demo test lint typecheck unit services bench-smoke wheel-check constraints man clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The demo installs only what it runs: keep, and keep-server (its extra).
$(DEMO_STAMP): pyproject.toml constraints.txt setup.py src/keep/protocol/_nodes.c | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[server]'
	@rm -f $(VENV)/.demo-* && touch $@

# The test extras include `mount` (pyfuse3, built against Debian's libfuse3); the
# tests need the compiled tree decoder, so Python's headers too.
$(TEST_STAMP): pyproject.toml constraints.txt setup.py src/keep/protocol/_nodes.c | $(PY)
	PYTHON=$(PYTHON) scripts/system-packages.sh
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@rm -f $(VENV)/.test-* $(VENV)/.demo-* && touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m demo

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy -p keep
	$(VENV)/bin/mypy tests benchmarks demo support

services:
	PYTHON=$(PYTHON) scripts/test-services.sh

unit: $(TEST_STAMP) services
	$(PY) -m pytest -q -p no:cacheprovider

bench-smoke: $(TEST_STAMP)
	$(PY) -m benchmarks.bench_protocol --smoke

# The sdist and the wheel, built and installed (not editable) into a fresh
# venv: the three commands run, and the demo runs from it.
wheel-check: $(TEST_STAMP)
	PYTHON=$(PYTHON) scripts/check-wheel.sh

test: lint typecheck unit wheel-check

# Man pages from the CLI (one per command): install with
# `install -m 644 build/man/*.1 /usr/local/share/man/man1/`.
man: $(TEST_STAMP)
	$(PY) -m support.man_pages build/man

# Newest versions pyproject.toml allows, pinned; then run `make test`.
constraints:
	rm -rf .constraints-venv && $(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet --upgrade pip
	scripts/system-packages.sh
	.constraints-venv/bin/pip install --quiet '.[test]'
	( sed -n '1,3p' constraints.txt; .constraints-venv/bin/pip freeze --exclude-editable | grep -v '^keep-backup' ) > constraints.new
	mv constraints.new constraints.txt && rm -rf .constraints-venv

clean:
	rm -rf $(VENV) .services build *.egg-info .pytest_cache .mypy_cache .ruff_cache
