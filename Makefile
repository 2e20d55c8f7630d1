# The verbs people type. Every target sets up what it needs (tools/install is idempotent and
# takes seconds once the cache in ~/.cache/qframe-tools is warm).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv/bin
STACK  ?= dev
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
IMAGES ?=


.PHONY: help setup venv plan up down preview demo bench bench-data test test-unit test-charts test-services test-policy test-e2e lint fmt clean

help: ## list the verbs
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## install the pinned toolchain, the node's Debian packages and the Python environment (.venv, .tools/bin)
	tools/install

up: setup ## the main job: real local node (unless KUBECONFIG is set; QFRAME_CLUSTER=kwok: simulated) + pulumi up of Pulumi.$(STACK).yaml
	$(VENV)/python -m tools.devstack up --stack $(STACK)

down: venv ## pulumi destroy of the stack, then stop the local node and restore the host (or remove the kwok cluster)
	$(VENV)/python -m tools.devstack down --stack $(STACK)

preview: venv ## pulumi preview of the stack against the cluster
	$(VENV)/python -m tools.devstack preview --stack $(STACK)

plan: venv ## check Pulumi.$(STACK).yaml and show every resource it would create (offline: the venv and the operators' CRDs)
	tools/install crds
	$(VENV)/python -m tools.devstack plan --stack $(STACK)

demo: setup ## the researcher's main job: data, features, walk-forward sweep on local Dask, MLflow, tear sheet
	$(VENV)/qframe demo $(DEMO_ARGS)

bench: setup ## backtest benchmarks: bar-evaluations/s on one core, peak memory, Dask/Ray speed-up
	$(VENV)/python -m benchmarks.bench_backtest $(BENCH_ARGS)
	$(VENV)/python -m benchmarks.bench_backends $(BENCH_ARGS)

bench-data: setup ## data lake benchmark: write/read throughput to disk and MinIO, partition pruning
	$(VENV)/python -m benchmarks.bench_data $(BENCH_ARGS)

test: setup ## run every test tier that exists (unit, charts, services, policy, e2e, images)
	$(VENV)/pytest $(PYTEST_ARGS)

test-unit: setup ## only the unit tier (pure builders, Pulumi program under mocks)
	$(VENV)/pytest -m unit $(PYTEST_ARGS)

test-charts: setup ## only the chart tier (real helm, schema and security checks)
	$(VENV)/pytest -m charts $(PYTEST_ARGS)

test-services: setup ## only the services tier (real Postgres, Kafka, S3 API, MLflow)
	$(VENV)/pytest -m services $(PYTEST_ARGS)

test-policy: setup ## only the policy tier (the CrossGuard pack's rules on fixtures and stacks, the CLI running it offline)
	$(VENV)/pytest -m policy $(PYTEST_ARGS)

test-e2e: setup ## only the e2e tier (pulumi up/destroy against a local Kubernetes API server)
	$(VENV)/pytest -m e2e $(PYTEST_ARGS)

lint: venv ## ruff (lint + format check) and mypy (strict on infra/ and platform/src)
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy infra platform/src tests tools benchmarks policy

fmt: venv ## format and auto-fix
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

clean: ## remove the venv and tool links (the tool cache outside the repo stays)
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache

venv: ## only the Python environment (enough for lint and fmt)
	tools/install venv

# Container images (images/, built by tools/images with its own dockerd; cache in ~/.cache/qframe-images).
.PHONY: images images-push test-images
REGISTRY ?=

images: setup ## build every image in images/ (content tags; cached: seconds when nothing changed)
	$(VENV)/python -m tools.images build

images-push: venv ## retag qframe/<name>:<tag> to $(REGISTRY)/<name>:<tag> and push (REGISTRY=host/path; IMAGES="a b" for some)
	@test -n "$(REGISTRY)" || { printf 'error: REGISTRY is not set\n  fix: make images-push REGISTRY=registry.example.com/team\n' >&2; exit 1; }
	$(VENV)/python -m tools.images push --registry "$(REGISTRY)" $(IMAGES)

test-images: setup ## only the images tier (build, run as non-root, probes, no compilers, hadolint)
	$(VENV)/pytest -m images $(PYTEST_ARGS)
