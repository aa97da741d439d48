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
, := ,

.PHONY: help install run test test-fast lint format clean prometheus image-tools base-image image image-test dashboard

help: ## Show this help
	@echo "promptrec — streaming recommender on Kafka"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) TORCH_SPEC=$(TORCH_SPEC)"
	@echo "Image:     ENGINE=$(ENGINE) IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) ENGINE_FLAGS=$(ENGINE_FLAGS)"

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

# --- Worker image (deploy/Dockerfile), built and run with podman --------------------------------
# The base is a minimal Debian made from Debian packages (mmdebstrap -> tarball -> podman import),
# so no image registry is needed; pip fetches the Python packages during the build (host network).
# Elsewhere `docker build -f deploy/Dockerfile .` uses the default python:3.11-slim base.
ENGINE ?= podman
# Extra flags of `$(ENGINE) build` and `$(ENGINE) run`. Sandboxes without CAP_SYS_RESOURCE and with
# hybrid cgroups need e.g. ENGINE_FLAGS='--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768'.
ENGINE_FLAGS ?=
IMAGE ?= localhost/promptrec:latest
BASE_SUITE ?= bookworm
BASE_IMAGE ?= localhost/promptrec-base:debian
# Outside the repository on purpose: the tarball (~250 MB) is never committed.
BASE_TAR ?= /var/tmp/promptrec-image/debian-$(BASE_SUITE).tar
DEBIAN_MIRROR ?= http://deb.debian.org/debian
DEBIAN_SECURITY ?= http://deb.debian.org/debian-security
# torch for the image: PyTorch's CPU index. Where it is unreachable, put a CPU wheel in ./.whl and
# run: make image TORCH_INDEX_URL= IMAGE_TORCH_SPEC=torch==2.13.0+cpu
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
IMAGE_TORCH_SPEC ?= torch==2.13.0
# CA bundle for pip inside the build (TLS-intercepting proxies), passed as a build secret.
PIP_CA ?= $(PIP_CERT)

# podman, buildah, mmdebstrap and runc from Debian (as root or via passwordless sudo).
image-tools: ## Install podman, buildah and mmdebstrap (Debian packages), if missing
	@if command -v $(ENGINE) >/dev/null && command -v mmdebstrap >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make image-tools: not root and no passwordless sudo; run 'sudo apt-get install -y podman buildah mmdebstrap runc'"; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get update && $$SUDO apt-get install -y podman buildah mmdebstrap runc uidmap

$(BASE_TAR):
	@mkdir -p $(dir $@)
	mmdebstrap --variant=minbase --format=tar --include=python3,python3-venv,python3-pip,ca-certificates \
	  $(BASE_SUITE) $@.tmp \
	  "deb $(DEBIAN_MIRROR) $(BASE_SUITE) main" \
	  "deb $(DEBIAN_MIRROR) $(BASE_SUITE)-updates main" \
	  "deb $(DEBIAN_SECURITY) $(BASE_SUITE)-security main"
	mv $@.tmp $@

# Imported again only when the tarball is newer or the image is gone: a fresh import is a new
# image id, which would invalidate the build cache of every layer.
base-image: image-tools $(BASE_TAR) ## Build a minimal Debian (mmdebstrap) and import it as BASE_IMAGE
	@if ! $(ENGINE) image inspect $(BASE_IMAGE) >/dev/null 2>&1 || [ $(BASE_TAR) -nt $(BASE_TAR).imported ]; then \
	  set -x; $(ENGINE) import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' $(BASE_TAR) $(BASE_IMAGE) \
	  && touch $(BASE_TAR).imported; \
	else echo "$(BASE_IMAGE) is up to date ($(BASE_TAR))"; fi

image: base-image ## Build the Debian base image, then the worker image on it (weights baked in)
	$(ENGINE) build $(ENGINE_FLAGS) $(if $(filter podman%,$(notdir $(ENGINE))),--format docker) \
	  --network host -f deploy/Dockerfile \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) \
	  --build-arg TORCH_SPEC=$(IMAGE_TORCH_SPEC) \
	  $(if $(PIP_CA),--secret id=pip-ca$(,)src=$(PIP_CA)) \
	  -t $(IMAGE) .
	@$(ENGINE) image inspect --format 'built $(IMAGE): {{.Size}} bytes' $(IMAGE)

# tests/deploy/test_image.py with its skips turned into failures: the engine must run containers
# and IMAGE must exist. Starts an embedded broker here and the worker container on the host network.
image-test: $(STAMP) ## Run the built image: /healthz, /readyz, one interaction -> one recommendation
	PROMPTREC_IMAGE=$(IMAGE) PROMPTREC_ENGINE=$(ENGINE) PROMPTREC_ENGINE_FLAGS='$(ENGINE_FLAGS)' \
	PROMPTREC_IMAGE_TEST_REQUIRED=1 $(BIN)/python -m pytest tests/deploy/test_image.py -v -rP $(PYTEST_ARGS)

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
