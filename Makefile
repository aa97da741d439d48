# promptrec — run `make` (or `make help`) to list the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
# torch is installed first, on its own. From the public PyPI index torch==2.13.0 is the CUDA build
# (several GB); for the CPU-only build name PyTorch's CPU index:
#   make install TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu'
# (see the README). A pip set up with a CPU mirror gets the CPU build from the default.
TORCH_SPEC ?= torch==2.13.0
# Tested versions of every other dependency (empty to let pip resolve freely).
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.promptrec-installed

.PHONY: help install run test test-fast lint format clean prometheus dashboard

help: ## Show this help
	@echo "promptrec — streaming recommender on Kafka"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) TORCH_SPEC=$(TORCH_SPEC)"

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip install $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create the virtualenv (if missing) and install the project

run: $(STAMP) ## Run the demo: embedded broker + worker + sample stream, live recommendations
	$(BIN)/promptrec demo

test: $(STAMP) prometheus ## Run the whole test suite (unit + integration on the embedded broker)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's `prometheus` package gives `prometheus` and `promtool`, which the dashboard and alert
# tests (tests/deploy) run. Installed as root (or via passwordless sudo) with apt-get; where that
# is impossible the target only warns and those tests skip with the same instructions.
prometheus: ## Install Prometheus + promtool (Debian package) for tests/deploy, if missing
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make prometheus: not root and no passwordless sudo; run 'sudo apt-get install -y prometheus' (tests/deploy will skip)"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "make prometheus: no apt-get; install Prometheus 2.x (prometheus + promtool on PATH) yourself (tests/deploy will skip)"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y --no-install-recommends prometheus \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends prometheus; } \
	  || echo "make prometheus: apt-get could not install prometheus (tests/deploy will skip)"

test-fast: $(STAMP) ## Run the tests that need no broker and no real model
	$(BIN)/python -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

dashboard: $(STAMP) ## Regenerate deploy/grafana/dashboards/promptrec.json from its code
	$(BIN)/python -m promptrec.observability.dashboard --out deploy/grafana/dashboards/promptrec.json

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check promptrec tests
	$(BIN)/ruff format --check promptrec tests
	$(BIN)/mypy promptrec

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format promptrec tests
	$(BIN)/ruff check --fix promptrec tests

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache state
