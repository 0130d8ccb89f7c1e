# The two commands of the quickstart: `make run` and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: help venv install install-dev provision run test lint format typecheck requirements env-docs clean

help:
	@echo "make run        start the platform (embedded PostgreSQL + Redis unless DATABASE_URL / REDIS_URL are set)"
	@echo "make test       run the test suite with coverage on real PostgreSQL and Redis"
	@echo "make lint       ruff (lint + format check) and mypy"
	@echo "make requirements  re-pin requirements/*.txt from requirements/*.in"
	@echo "make env-docs   regenerate the configuration table in README.md"
	@echo "make sandbox-image  build the default sandbox image offline (FORCE=1 rebuilds)"

install:
	@scripts/venv.sh run

install-dev:
	@scripts/venv.sh dev

venv: install-dev

run:
	@scripts/provision.sh run
	@$(PY) manage.py run_platform

test:
	@scripts/provision.sh test
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

format: install-dev
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

typecheck: install-dev
	.venv/bin/mypy

requirements: install-dev
	.venv/bin/uv pip compile -q --python .venv/bin/python requirements/base.in -o requirements/base.txt
	.venv/bin/uv pip compile -q --python .venv/bin/python requirements/memory.in -o requirements/memory.txt
	.venv/bin/uv pip compile -q --python .venv/bin/python requirements/run.in -o requirements/run.txt
	.venv/bin/uv pip compile -q --python .venv/bin/python requirements/dev.in -o requirements/dev.txt

env-docs: install
	@$(PY) scripts/env_docs.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage

# ------------------------------------------------------------------------------ sandbox (apps/sandbox)
.PHONY: sandbox-image sandbox-reap
sandbox-image: install  ## build the default sandbox image offline (debootstrap + docker import); --force rebuilds
	@$(PY) manage.py sandbox_image $(if $(FORCE),--force,)

sandbox-reap: install  ## destroy expired sandboxes and orphaned containers now
	@$(PY) manage.py sandbox_reap

# ---------------------------------------------------------------- conformance (gateway; see conformance/run.sh)
.PHONY: conformance
conformance: install-dev
	@conformance/run.sh
