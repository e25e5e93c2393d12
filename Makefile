# The common commands. `make run` and `make test` set up whatever is missing first.
.PHONY: image setup run up down demo test test-unit test-integration test-e2e test-fault lint format typecheck schemas tour bench lock clean audit

VENV := .venv/bin
PYTEST := $(VENV)/python -m pytest

setup:  ## install system packages, the virtualenv and the Kafka jars when missing
	@scripts/bootstrap.sh

run: setup  ## start the whole stack, import 60 days of demo history, post a demo of 300 leads, keep running until Ctrl-C
	$(VENV)/funnel up --history-days 60 --demo 300

up: setup  ## start the stack in the background
	$(VENV)/funnel up --detach

down:  ## stop a background stack
	$(VENV)/funnel down

demo:  ## post demo traffic to a running stack
	$(VENV)/funnel demo --leads 300

test: setup lint typecheck  ## every tier: unit, integration, end-to-end, fault
	$(PYTEST)

test-unit: setup
	$(PYTEST) -m "not integration and not e2e and not fault"

test-integration: setup
	$(PYTEST) -m integration

test-e2e: setup
	$(PYTEST) -m e2e

test-fault: setup
	$(PYTEST) -m fault

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports --no-cache

format:
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

typecheck:
	$(VENV)/mypy libs/contracts/src libs/servicekit/src libs/devstack/src services/*/src

tour:  ## redraw the README's tour from the topic registry and the services' interface.py
	$(VENV)/python scripts/generate_tour.py

schemas:  ## regenerate libs/contracts/schemas (refuses incompatible changes)
	$(VENV)/python -m funnel_contracts.schemas

IMAGE ?= funnel:0.1.0
image:  ## build the image: docker (with a daemon) or buildah; else replay the Dockerfile's steps and start a service
	@if docker info >/dev/null 2>&1; then docker build -t $(IMAGE) .; \
	elif command -v buildah >/dev/null 2>&1; then buildah bud --layers -t $(IMAGE) .; \
	else echo "image: no Docker daemon and no buildah here: replaying the Dockerfile's build into a clean virtualenv and starting a service from it"; \
	  $(PYTEST) tests/deploy/test_deploy_image_replay.py -q; fi

audit: setup  ## pip-audit of every pinned version; says so when the vulnerability service is unreachable
	$(VENV)/python scripts/dependency_audit.py

bench: setup  ## benchmarks: ratios against baselines measured in the same run
	$(VENV)/python -m bench

lock:  ## re-pin every transitive dependency into constraints.txt
	$(VENV)/pip freeze --exclude-editable | grep -v -e '^funnel-' -e ' @ ' > constraints.txt.new
	{ echo "# Pinned versions of every third-party package, direct and transitive (make lock)."; cat constraints.txt.new; } > constraints.txt
	rm constraints.txt.new

clean:
	rm -rf .venv .mypy_cache .ruff_cache tests/artifacts
