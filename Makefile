# modelberth: the one entry point. `make` lists the targets; CI runs the same ones.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= uv
PYTHON ?= python3
RUN := $(UV) run --frozen
export MODELBERTH_STATE_DIR ?= $(CURDIR)/.modelberth
MODEL_DIR ?= $(CURDIR)/artifacts/models
DATASET ?= iris
PYTEST_ARGS ?=

.PHONY: help install install-system lint format test test-unit test-integration bench up train schema \
        images model-image test-images kind-up deploy e2e loadtest dashboards clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install uv (with pip) if missing, then the locked environment
	@command -v $(UV) >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen

install-system: ## Debian packages the integration tests drive for real (chromium, prometheus)
	scripts/install-system-deps.sh

lint: install ## ruff and mypy (strict) on every package
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy services/core/src services/auth/src services/inference/src services/ui/src trainer/src

format: install ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

test: install install-system ## every test that runs on one machine: unit, integration, browser, prometheus, locust
	$(RUN) pytest --cov --cov-report=term --cov-fail-under=80 $(PYTEST_ARGS)

test-unit: install ## fast tests only (no processes, no real datasets)
	$(RUN) pytest -m "not integration and not slow" $(PYTEST_ARGS)

test-integration: install install-system ## real processes on 127.0.0.1 only
	$(RUN) pytest -m integration $(PYTEST_ARGS)

train: install ## train DATASET (default iris) into MODEL_DIR
	$(RUN) modelberth train --dataset $(DATASET) --out $(MODEL_DIR)

bench: install ## trainer quality/speed and inference throughput; results in bench/results/
	$(RUN) python -m bench.trainer
	$(RUN) python -m bench.inference

schema: install ## regenerate the checked-in JSON Schema of model.json
	$(RUN) python -c "import json; from modelberth_core import contract; \
	  open('services/core/model.schema.json','w').write(json.dumps(contract.card_json_schema(), indent=2, sort_keys=True)+'\n')"

up: install ## the whole stack on this machine: train iris if needed, start auth, inference and ui
	$(RUN) modelberth up --model-dir $(MODEL_DIR)

clean: ## remove local state, artifacts and caches (keeps .venv)
	rm -rf .modelberth artifacts .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov loadtest/reports
