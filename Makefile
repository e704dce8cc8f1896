# mirrord — the two commands a new machine needs:
#   make demo   set up what the demo needs (docker-registry, skopeo, a venv without the test extras) and
#               mirror a sample multi-platform image between throwaway registries on free ports
#   make test   set everything up and run ruff, mypy and the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: all deps demo-deps venv demo-venv lint typecheck pytest test demo bench image image-test clean

all: test

deps:  ## Debian packages the tests and the demo use (docker-registry, skopeo, oci-image-tool, prometheus)
	bash scripts/install-deps.sh

demo-deps:  ## only the Debian packages the demo runs: docker-registry and skopeo
	bash scripts/install-deps.sh --demo

# A virtualenv with pip up to date (python3-venv installed first when venv or ensurepip is missing).
define make-venv
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || bash scripts/install-deps.sh --python-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
endef

$(STAMP): pyproject.toml
	$(make-venv)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The demo needs mirrord and its runtime dependencies only, not the test toolchain.
$(DEMO_STAMP): pyproject.toml
	$(make-venv)
	$(BIN)/pip install --quiet -e .
	touch $(DEMO_STAMP)

venv: $(STAMP)

demo-venv: $(DEMO_STAMP)

lint: venv
	$(BIN)/ruff check mirrord tests bench scripts
	$(BIN)/ruff format --check mirrord tests bench scripts

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: deps venv lint typecheck pytest

demo: demo-deps demo-venv
	$(BIN)/python scripts/demo.py

bench: deps venv
	$(BIN)/python -m bench $(BENCH_ARGS)

image: deps  ## the container image (buildah, or docker when its daemon runs); IMAGE_ARGS="--tag T --base B"
	$(PYTHON) scripts/image.py build $(IMAGE_ARGS)

image-test: deps venv  ## build the image, run the daemon in it, and have podman run what mirrord mirrored
	$(BIN)/pytest -q -p no:cacheprovider -m image tests/image $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo bench/out
