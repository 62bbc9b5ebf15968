# xpvae — `make help` lists the documented targets (a line `target: ## text` documents one).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch: GPU users install their own CUDA build into the venv first (see README).
TORCH_SPEC ?= torch==2.13.0
export XPVAE_HOME ?= $(CURDIR)/var
# Test processes (pytest-xdist): one per CPU; whole files go to one process, so a module's fixtures are built once.
# TEST_PROCS=0 runs in this process (for -x, --pdb).
TEST_PROCS ?= auto
PYTEST := $(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile

.DEFAULT_GOAL := help
.PHONY: help venv lint test test-unit test-integration bench demo up down status logs db-upgrade clean

help: ## list the documented targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# setup.py and the C source: the compiled array-text parser is rebuilt when they change
$(VENV)/.installed: pyproject.toml setup.py ingest/readers/_arraytext.c db/_pgcopy.c shared/_wchi2.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

venv: $(VENV)/.installed ## create or update the virtual environment (.venv)

lint: venv ## style and type gate: ruff (pyflakes, pycodestyle, bugbear, isort, complexity) and mypy on shared/, db/ and jobqueue/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: venv lint ## the lint gate, then the whole test suite (unit + integration against local PostgreSQL/RabbitMQ)
	$(PYTEST) $(PYTEST_ARGS)

test-unit: venv ## run only the tests that need no PostgreSQL or RabbitMQ
	$(PYTEST) -m "not integration" $(PYTEST_ARGS)

test-integration: venv ## run only the integration tests (real PostgreSQL, RabbitMQ, Celery workers)
	$(PYTEST) -m integration $(PYTEST_ARGS)

bench: venv ## run the benchmarks and print figures with ratios against in-process baselines
	$(PY) -m bench $(BENCH_ARGS)

demo: venv ## simulate, ingest, train, infer and analyse a survey on the embedded default (SQLite, in-process)
	$(VENV)/bin/xpvae demo $(DEMO_ARGS)

db-upgrade: venv ## apply the database migrations to XPVAE_DATABASE_URL
	$(VENV)/bin/xpvae db upgrade

up: venv ## start the stack: containers if a Docker engine runs (XPVAE_GPU=1: CUDA image, GPU trainer), else local workers
	@$(PY) -m xpvae.stack up

down: venv ## stop the stack started by `make up`
	@$(PY) -m xpvae.stack down

status: venv ## show the stack's services and workers
	@$(PY) -m xpvae.stack status

logs: venv ## follow the workers' logs
	@$(PY) -m xpvae.stack logs

clean: ## remove build output, caches and var/ (keeps .venv)
	rm -rf var build dist *.egg-info .pytest_cache
	rm -f ingest/readers/_arraytext*.so db/_pgcopy*.so shared/_wchi2*.so $(VENV)/.installed   # the next make rebuilds the C extensions
	find . -name __pycache__ -prune -exec rm -rf {} +
