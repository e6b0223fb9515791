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

.PHONY: help install install-system lint format test test-unit test-integration bench soak up train schema grpc-stubs \
        images model-image test-images kind-up deploy e2e chart-test loadtest check-alerts dashboards clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install uv (with pip) if missing, then the locked environment
	@# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on CI machines) nothing caches .pyc files,
	@# and every process would compile scikit-learn, pandas and gradio again (iris training: 9 s of imports).
	@command -v $(UV) >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode

install-system: ## Debian packages the integration tests drive for real (chromium, prometheus)
	scripts/install-system-deps.sh

lint: install ## ruff (with complexity limits), mypy (strict), import contracts, function length
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy services/core/src services/cli/src services/auth/src services/inference/src services/ui/src trainer/src \
	  modelberth_monitoring
	$(RUN) lint-imports
	$(RUN) python scripts/check_function_length.py services/*/src trainer/src modelberth_monitoring

format: install ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

test: install install-system ## every test that runs on one machine: unit, integration, browser, prometheus, locust
	$(RUN) pytest -m "not e2e and not docker" --cov --cov-report=term:skip-covered --cov-fail-under=80 $(PYTEST_ARGS)

test-unit: install ## fast tests only (no processes, no real datasets)
	$(RUN) pytest -m "not integration and not slow and not e2e and not docker" $(PYTEST_ARGS)

test-integration: install install-system ## real processes on 127.0.0.1 only
	$(RUN) pytest -m integration $(PYTEST_ARGS)

train: install ## train DATASET (default iris) into the store MODEL_DIR (exit 3: the gate kept the champion)
	$(RUN) modelberth train --dataset $(DATASET) --store $(MODEL_DIR)

bench: install install-system ## trainer, inference, gRPC vs REST, registry vs directory store, auth's shared-state cost, batch scoring; bench/results/ (BENCH_BASELINE=<commit>: that inference code in the same rounds)
	$(RUN) python -m bench.trainer
	$(RUN) python -m bench.inference $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE))
	$(RUN) python -m bench.grpc_rest
	$(RUN) python -m bench.registry
	$(RUN) python -m bench.score
	$(RUN) python -m bench.auth_state

soak: install ## SIGTERM under load: 20 runs x 50 clients on auth and inference; bench/results/sigterm.*
	$(RUN) python -m bench.sigterm_soak

schema: install ## regenerate the checked-in JSON Schema of model.json
	$(RUN) python -c "import json; from modelberth_core import contract; \
	  open('services/core/model.schema.json','w').write(json.dumps(contract.card_json_schema(), indent=2, sort_keys=True)+'\n')"

grpc-stubs: install ## regenerate the committed gRPC message modules from the OIP grpc_predict_v2.proto
	$(RUN) python scripts/generate_grpc_stubs.py

up: install ## the whole stack on this machine: train iris if needed, start auth, inference and ui
	$(RUN) modelberth up --store $(MODEL_DIR)

# Load test (issue 6). HOST is the API base URL; AUTH_URL is auth's (leave it empty behind one ingress host,
# where every path is served from HOST). By default both point at the local stack of `make up`.
HOST ?= http://127.0.0.1:8002
ifeq ($(origin HOST),file)
AUTH_URL ?= http://127.0.0.1:8001
endif
LOADTEST_USERS ?= 20
LOADTEST_SPAWN_RATE ?= 5
LOADTEST_DURATION ?= 60s
LOADTEST_P95_MS ?= 200
LOADTEST_REPORTS ?= loadtest/reports

loadtest: install ## headless Locust against HOST (default: the local stack); fails on any error or p95 > LOADTEST_P95_MS
	mkdir -p $(LOADTEST_REPORTS)
	LOADTEST_P95_MS=$(LOADTEST_P95_MS) $(RUN) locust -f loadtest/locustfile.py --headless --only-summary \
	  --host $(HOST) $(if $(AUTH_URL),--auth-url $(AUTH_URL)) \
	  -u $(LOADTEST_USERS) -r $(LOADTEST_SPAWN_RATE) -t $(LOADTEST_DURATION) --stop-timeout 10 \
	  --csv $(LOADTEST_REPORTS)/loadtest --html $(LOADTEST_REPORTS)/loadtest.html \
	  --json-file $(LOADTEST_REPORTS)/loadtest

check-alerts: install-system ## promtool: alert rules (charts/modelberth/files/alerts) are valid, their unit tests pass
	promtool check rules charts/modelberth/files/alerts/*.yaml
	promtool test rules k8s/tests/alerts-test.yaml

# Images (issue 7): docker/Dockerfile has one target per service; docker/README.md has the details.
# BASE_IMAGE empty = python:3.11-slim-bookworm if the engine has it, else a debootstrapped stand-in.
BASE_IMAGE ?=
IMAGE_TAG ?= dev
DATA ?=
TARGET ?=
TIME_BUDGET ?=

images: ## build the auth, inference, scoring, ui and trainer images (IMAGE_TAG=dev, BASE_IMAGE=...)
	@scripts/docker-engine.sh start >/dev/null
	BASE_IMAGE=$(BASE_IMAGE) IMAGE_TAG=$(IMAGE_TAG) scripts/docker-build.sh

model-image: ## train DATA=file.csv TARGET=col (default DATASET=iris) in the trainer image -> modelberth-model-<name>:<version>
	@scripts/docker-engine.sh start >/dev/null
	BASE_IMAGE=$(BASE_IMAGE) IMAGE_TAG=$(IMAGE_TAG) scripts/docker-model-image.sh \
	  $(if $(DATA),--data $(DATA),--dataset $(DATASET)) $(if $(TARGET),--target $(TARGET)) \
	  $(if $(TIME_BUDGET),--time-budget $(TIME_BUDGET))

test-images: install ## build every image and smoke-test them in a local Docker engine (docker/tests)
	$(RUN) pytest -m docker docker/tests -v --durations=5 $(PYTEST_ARGS)

# Kubernetes (issue 8): the chart in charts/modelberth, cluster config in k8s/, e2e in k8s/e2e.
KIND_CLUSTER ?= modelberth
NAMESPACE ?= modelberth
RELEASE ?= modelberth

# Dashboards are typed Python (modelberth_monitoring, on grafana-foundation-sdk); the JSON Helm reads is
# generated into the chart's files/, and charts/tests fails when the committed JSON is not what the code gives.
dashboards: install ## regenerate charts/modelberth/files/dashboards/*.json from modelberth_monitoring
	$(RUN) python -m modelberth_monitoring

chart-test: install ## chart checks: generated dashboards, helm lint/render, k8s schemas, PSS, NetworkPolicies, checkov, workflows
	$(RUN) python -m modelberth_monitoring --check
	$(RUN) pytest charts/tests $(PYTEST_ARGS)

kind-up: ## kind cluster (k8s/kind.yaml) with ingress-nginx and kube-prometheus-stack
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config k8s/kind.yaml
	helm upgrade --install ingress-nginx ingress-nginx --repo https://kubernetes.github.io/ingress-nginx \
	  --version 4.13.0 -n ingress-nginx --create-namespace -f k8s/ingress-nginx/values-kind.yaml --wait --timeout 5m
	kubectl get namespace monitoring >/dev/null 2>&1 || kubectl create namespace monitoring
	kubectl -n monitoring get secret grafana-admin >/dev/null 2>&1 || kubectl -n monitoring create secret generic \
	  grafana-admin --from-literal=admin-user=admin --from-literal=admin-password="$$(openssl rand -hex 24)"
	helm upgrade --install kube-prometheus-stack kube-prometheus-stack \
	  --repo https://prometheus-community.github.io/helm-charts --version 79.12.0 \
	  -n monitoring -f k8s/monitoring-values.yaml --wait --timeout 10m

deploy: ## build the images + iris model image, kind load them, Valkey for auth, helm install with k8s/values-kind.yaml
	$(MAKE) images IMAGE_TAG=e2e
	docker tag "$$($(MAKE) -s model-image IMAGE_TAG=e2e | tail -n 1)" modelberth-model-iris:e2e
	for image in auth inference ui model-iris; do kind load docker-image modelberth-$$image:e2e --name $(KIND_CLUSTER); done
	scripts/kind-state-store.sh $(NAMESPACE)
	helm upgrade --install $(RELEASE) charts/modelberth -n $(NAMESPACE) --create-namespace \
	  -f k8s/values-kind.yaml --wait --timeout 10m
	helm test $(RELEASE) -n $(NAMESPACE)

e2e: install ## e2e tests against the deployed release through http://modelberth.local (after make deploy)
	E2E_USERNAME="$$(kubectl -n $(NAMESPACE) get secret $(RELEASE)-bootstrap -o jsonpath='{.data.username}' | base64 -d)" \
	E2E_PASSWORD="$$(kubectl -n $(NAMESPACE) get secret $(RELEASE)-bootstrap -o jsonpath='{.data.password}' | base64 -d)" \
	E2E_NAMESPACE=$(NAMESPACE) E2E_RELEASE=$(RELEASE) $(RUN) pytest -m e2e k8s/e2e/test_cluster.py $(PYTEST_ARGS)

clean: ## remove local state, artifacts and caches (keeps .venv)
	rm -rf .modelberth artifacts .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .coverage htmlcov loadtest/reports
