# Keep — developer entry points. `make demo` and `make test` work on a fresh
# Debian machine with Python 3.11; both create .venv and install what they need.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: demo test lint typecheck unit services bench-smoke clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

# mypy cannot follow setuptools' editable import hook, so it checks the
# packages through a link tree that has the installed names (keep.protocol …).
.typecheck/keep: | $(STAMP)
	@mkdir -p .typecheck/keep
	@for p in protocol client server; do ln -sfn ../../$$p .typecheck/keep/$$p; done

demo: $(STAMP)
	$(PY) -m demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) .typecheck/keep
	MYPYPATH=.typecheck $(VENV)/bin/mypy -p keep.protocol -p keep.server -p keep.client
	MYPYPATH=.typecheck $(VENV)/bin/mypy tests benchmarks demo support

services:
	PYTHON=$(PYTHON) scripts/test-services.sh

unit: $(STAMP) services
	$(PY) -m pytest -q -p no:cacheprovider

bench-smoke: $(STAMP)
	$(PY) -m benchmarks.bench_protocol --smoke

test: lint typecheck unit

clean:
	rm -rf $(VENV) .services .typecheck build *.egg-info .pytest_cache .mypy_cache .ruff_cache
