# The two commands of the README, for a fresh machine with Python 3.11+ and pip:
#   make serve   set up .venv (serving dependencies) and serve models/ on http://127.0.0.1:8000
#   make test    set up .venv (+ train, test and keras extras, hadolint; docker-compose, wrk, chromium,
#                podman and its base image: deploy/podman-setup.sh) and run pytest
# Both are idempotent: the install steps re-run only when pyproject.toml changes.
#
# Variables: PYTHON (the interpreter that creates .venv; default: the first of python3,
# python3.13, python3.12, python3.11 that is 3.11 or newer), VENV (default .venv),
# PYTEST_ARGS (passed to pytest, e.g. make test PYTEST_ARGS="-k packaging -x").

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTEST_ARGS ?=
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)

PIP := $(VENV)/bin/python -m pip --disable-pip-version-check

.PHONY: help serve test tools clean

help:
	@echo "make serve   install the serving dependencies into $(VENV) and serve on port 8000"
	@echo "make test    install everything (train + test extras) into $(VENV) and run the tests"
	@echo "make clean   remove $(VENV) and caches"

serve: $(VENV)/.installed-serve
	$(VENV)/bin/python -m service

test: $(VENV)/.installed-test tools
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.11 or newer is needed (none of python3, python3.13, python3.12, python3.11 is);" \
			"pass one with make PYTHON=/path/to/python3.11" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)

# Editable install: `python -m service` then resolves models/ next to the service package.
$(VENV)/.installed-serve: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[train,test,keras]"
	@touch $@ $(VENV)/.installed-serve

# System tools the tests use, from Debian's packages: docker-compose (validates
# docker-compose.yml; the PyPI one no longer builds on Python 3.11) and wrk (the load test's
# generator, in C so it does not starve the server of the cores) and chromium (the page's
# browser tests, driven by Playwright). Installed only when missing,
# as root, with apt-get; elsewhere the tests that need them skip and say why.
DEB_TOOLS := docker-compose wrk chromium

tools:
	@missing=""; for tool in $(DEB_TOOLS); do \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing (Debian packages) for the tests"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "note:$$missing not installed (and this is not root with apt-get): tests needing them will skip"; \
		fi; \
	fi
	@# podman, runc, debootstrap and the stand-in base image for tests/test_container.py: each
	@# step only when missing (the base image and podman's built layers stay between runs).
	@bash deploy/podman-setup.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
