# The two commands a new machine needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PLATFORM := deploy/local/platform
SERVICES := identity contracts loyalty notifier claims documents gateway console
# The services with a stream side: each has a committed AsyncAPI document.
STREAMING := identity contracts loyalty notifier claims documents

.PHONY: help run stop test test-unit lint format bench chaos schemas tools

help:
	@echo "make run    - start Kafka, PostgreSQL and every service; print what runs where"
	@echo "make stop   - stop what make run started"
	@echo "make test   - start what the tests need, run unit, integration and e2e tests, stop it"
	@echo "make lint   - ruff and mypy (strict)"
	@echo "make bench  - throughput benchmarks against their baselines"
	@echo "make chaos  - every service twice under faults on an isolated platform; invariants"

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml */*/pyproject.toml)
	$(UV) sync --frozen --quiet
	@touch $@

tools: .venv/.synced

run: tools
	@scripts/run-platform start

stop:
	@scripts/run-platform stop

# Kafka and PostgreSQL come from the root conftest.py (README: where the tests get them).
test: tools
	$(UV) run pytest $(PYTEST_ARGS)

test-unit: tools
	$(UV) run pytest -m "not integration and not e2e" $(PYTEST_ARGS)

lint: tools
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy -p servicekit -p contracts_schemas $(addprefix -p ,$(SERVICES))
	MYPYPATH=tests:services/notifier/tests $(UV) run mypy --follow-imports=silent -p chaos
	$(UV) run python -m contracts_schemas.export --check
	$(UV) run python -m servicekit.asyncapi_cli --check $(STREAMING)
	@$(PLATFORM) ensure-prometheus
	promtool check rules deploy/prometheus/rules/*.yml
	scripts/check-kubernetes

format: tools
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

schemas: tools
	$(UV) run python -m contracts_schemas.export

bench: tools
	@scripts/with-platform $(UV) run python -m bench $(BENCH_ARGS)

# Its own Kafka/PostgreSQL/Redis (an isolated launcher instance): never the shared platform.
chaos: tools
	$(UV) run python -m chaos $(CHAOS_ARGS)
