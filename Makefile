# mirrord — the two commands a new machine needs:
#   make demo   set everything up and mirror a sample multi-platform image between throwaway registries
#   make test   set everything up and run ruff, mypy and the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all deps venv lint typecheck pytest test demo bench clean

all: test

deps:  ## Debian packages the tests and the demo use (docker-registry, skopeo, oci-image-tool, prometheus)
	bash scripts/install-deps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || bash scripts/install-deps.sh --python-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check mirrord tests bench scripts
	$(BIN)/ruff format --check mirrord tests bench scripts

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: deps venv lint typecheck pytest

demo: deps venv
	$(BIN)/python scripts/demo.py

bench: deps venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo bench/out
