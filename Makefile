# The one entry point people and CI use. `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## create .venv with locked dependencies, the project and the CPU model
	@bash scripts/setup.sh

demo: setup ## set up, start the whole stack and stream a real answer
	@$(BIN)/aigc up
	@$(BIN)/aigc chat "What is the Great Wall of China? Answer in two sentences." --max-tokens 96
	@echo "[demo] the stack is still running: try '$(BIN)/aigc chat \"...\"', stop it with '$(BIN)/aigc down'"

ci: setup ## set up, then lint, typecheck, check proto stubs and run every test tier
	@bash scripts/ci.sh

up: ## start the stack (services as processes)
	@$(BIN)/aigc up

down: ## stop the stack
	@$(BIN)/aigc down

proto: ## regenerate the Python stubs from proto/ with the pinned tools
	@PYTHON=$(PY) bash scripts/gen-protos.sh

proto-check: ## fail when the committed stubs differ from what the protos generate
	@PYTHON=$(PY) bash scripts/gen-protos.sh --check

fmt: ## format the code
	@$(BIN)/ruff format services tests loadtests scripts
	@$(BIN)/ruff check --fix services tests loadtests scripts

lint: ## ruff lint and format check
	@$(BIN)/ruff check services tests loadtests scripts
	@$(BIN)/ruff format --check services tests loadtests scripts

typecheck: ## mypy on service code
	@$(BIN)/mypy

test: ## every test tier (starts Kafka, Redis and Prometheus as needed)
	@bash scripts/run-tests.sh

native-check: ## the safety service's C helpers under AddressSanitizer and UBSan, against the Python paths
	@bash scripts/check-native.sh

test-unit: ## unit and gRPC tests only (no local stack, no model)
	@$(PY) -m pytest -m "not integration and not e2e"

bench-inference: ## inference overhead benchmark (gRPC and Ray Serve vs in-process), in a private network namespace
	@unshare --net -- bash -c 'ip link set lo up && exec $(PY) loadtests/bench_inference.py --ray'

stack-up: ## start Kafka, Redis and Prometheus on loopback
	@bash scripts/local-stack.sh up

stack-down: ## stop Kafka, Redis and Prometheus
	@bash scripts/local-stack.sh down

stack-status: ## show the local stack's state
	@bash scripts/local-stack.sh status

lock: ## re-resolve requirements/lock.txt and requirements/gpu-lock.txt from pyproject.toml
	@$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements/lock.txt -q --no-header
	@$(BIN)/uv pip compile pyproject.toml --extra dev --extra gpu --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements/gpu-lock.txt -q --no-header

.PHONY: help setup demo ci up down bench-inference proto proto-check fmt lint typecheck test test-unit native-check stack-up stack-down stack-status lock
