# mirror: `make demo` runs the main job on a loopback registry; `make test` runs every check.
# Both install what they need: Debian packages (docker-registry, skopeo, umoci, and the container
# engines docker.io and podman for the interop tests) and a .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := docker-registry skopeo umoci docker.io podman
PYTEST_ARGS ?=

.PHONY: all deps venv lint test demo bench bench-compare bench-estate fixtures clean

all: test

deps:
	@missing=""; \
	for b in docker-registry skopeo umoci dockerd podman; do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(APT_PACKAGES) python3-venv >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: deps venv lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: deps venv
	$(BIN)/python -m tests.demo

bench: deps venv
	$(BIN)/python -m tests.bench --write

# mirror at BASE (a git revision) against the working tree, same run: `make bench-compare BASE=HEAD~1`
BASE ?= HEAD
bench-compare: deps venv
	$(BIN)/python -m tests.bench_compare $(BASE) --write

# a no-op sync of 1,000 repositories x 100 tags at a 30 ms distance (issue 29); REPOS/TAGS to scale it
REPOS ?= 1000
TAGS ?= 100
bench-estate: deps venv
	$(BIN)/python -m tests.bench_estate --repos $(REPOS) --tags $(TAGS) --write

fixtures: venv
	$(BIN)/python fixtures/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo .bench
