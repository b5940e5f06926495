# One entry point for every task. `make test` sets itself up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_SAM := .venv-sam
VENV_CHECKOV := .venv-checkov
PY := $(VENV)/bin/python
# sam build needs the Lambda runtime's interpreter (python3.13) on PATH; pyenv provides it here.
PYENV_VERSION ?= 3.13.0:3.11.7
# Tools and tests never reach real AWS: fixed region, fake credentials, no telemetry.
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= $(AWS_DEFAULT_REGION)
export SAM_CLI_TELEMETRY := 0
TEST_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
	AWS_ENDPOINT_URL= AWS_PROFILE= POWERTOOLS_DEV=false
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
POLICY ?= policies/default.json

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-virtualenv -r requirements/dev.txt $(PIP_QUIET)
	touch $@

$(VENV_SAM)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(VENV_SAM)
	$(VENV_SAM)/bin/pip install --quiet --require-virtualenv -r requirements/sam.txt $(PIP_QUIET)
	touch $@

$(VENV_CHECKOV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install --quiet --require-virtualenv -r requirements/checkov.txt $(PIP_QUIET)
	touch $@

.PHONY: setup
setup: $(VENV)/.installed $(VENV_SAM)/.installed $(VENV_CHECKOV)/.installed ## create the three virtualenvs

.PHONY: lint
lint: $(VENV)/.installed ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: $(VENV)/.installed ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: typecheck
typecheck: $(VENV)/.installed ## mypy (strict) on the functions, the layer and the local stack
	$(VENV)/bin/mypy layers/shared/geft functions/webhook_receiver/webhook_receiver \
		functions/decision_processor/decision_processor functions/scheduled_jobs/scheduled_jobs \
		local/geft_local ops/geft_ops

.PHONY: validate
validate: $(VENV)/.installed $(VENV_SAM)/.installed $(VENV_CHECKOV)/.installed ## sam validate --lint, cfn-lint, checkov
	$(VENV_SAM)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV_CHECKOV)/bin/checkov --config-file .checkov.yaml --file template.yaml

.PHONY: check-runtime
check-runtime:
	@PYENV_VERSION=$(PYENV_VERSION) python3.13 --version >/dev/null 2>&1 || { \
		echo "sam build needs python3.13 on PATH (the Lambda runtime); install it or set PYENV_VERSION" >&2; exit 1; }

.PHONY: build
build: $(VENV_SAM)/.installed check-runtime ## sam build (no container): python3.13, arm64
	PYENV_VERSION=$(PYENV_VERSION) $(VENV_SAM)/bin/sam build --cached --parallel $(PIP_QUIET)

.PHONY: pytest
pytest: $(VENV)/.installed ## the test suite only
	$(TEST_ENV) $(PY) -m pytest

.PHONY: test
test: lint typecheck validate build pytest ## everything CI runs

.PHONY: policy-check
policy-check: $(VENV)/.installed ## validate a policy file offline: make policy-check POLICY=file.json
	PYTHONPATH=layers/shared $(PY) -m geft.policy check $(POLICY)

# The local stack: fake credentials, and only our code on PYTHONPATH (each function's container gets
# just its CodeUri and layers). LOCAL_PORT, WEBHOOK_SECRET, FLINKS_*, DECISION_POLICY, PARAM_<Name>:
# see docs/local-stack.md.
LOCAL_ENV := $(TEST_ENV) PYTHONPATH=local:layers/shared

.PHONY: local
local: $(VENV)/.installed ## the whole pipeline on this machine (moto, warm function containers, Flinks sandbox); Ctrl-C stops it
	$(LOCAL_ENV) $(PY) -m geft_local.stack

.PHONY: demo
demo: $(VENV)/.installed ## start the local stack, play Flinks for a few sessions, check each outcome
	$(LOCAL_ENV) $(PY) -m geft_local.demo

.PHONY: clean
clean: ## remove build output and caches (keeps the virtualenvs)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

# -- reliability: docs/reliability.md ----------------------------------------------------------------
VENV_AUDIT := .venv-audit
REL_FUZZ_EXAMPLES ?= 10000
REL_REPORT_DIR ?= .reliability
RELIABILITY_TESTS := tests/integration/test_receiver_fuzz.py tests/integration/test_decision_faults.py \
	tests/integration/test_crash_points.py tests/integration/test_secret_rotation.py \
	tests/integration/log_hygiene tests/unit/test_hostile_numbers.py tests/e2e/test_load.py
LOCK_COMMAND := pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links

$(VENV_AUDIT)/.installed: requirements/audit.txt
	$(PYTHON) -m venv $(VENV_AUDIT)
	$(VENV_AUDIT)/bin/pip install --quiet --require-virtualenv -r requirements/audit.txt $(PIP_QUIET)
	touch $@

.PHONY: reliability
reliability: $(VENV)/.installed $(VENV_AUDIT)/.installed ## 10,000 fuzzed requests, faults, crashes, races, load (slow tests included), then reliability-audit
	rm -rf $(REL_REPORT_DIR)
	REL_FUZZ_EXAMPLES=$(REL_FUZZ_EXAMPLES) REL_REPORT_DIR=$(REL_REPORT_DIR) $(TEST_ENV) \
		$(PY) -m pytest -m "" $(RELIABILITY_TESTS)
	$(PY) -m tests.support.reliability_report $(REL_REPORT_DIR)
	$(MAKE) --no-print-directory reliability-audit

.PHONY: reliability-audit
reliability-audit: $(VENV_AUDIT)/.installed ## bandit, pip-audit of the locked runtime dependencies, lock freshness and --require-hashes install
	$(VENV_AUDIT)/bin/bandit -q -r functions layers
	$(VENV_AUDIT)/bin/bandit -q -c requirements/bandit-local.yaml -r local
	mkdir -p $(REL_REPORT_DIR)
	$(VENV_AUDIT)/bin/pip-audit --disable-pip --require-hashes --format json \
		--output $(REL_REPORT_DIR)/pip-audit.json -r requirements/runtime.lock $(PIP_QUIET)
	$(PY) -m tests.support.pip_audit_verdict $(REL_REPORT_DIR)/pip-audit.json
	@# the lock must be what pip-compile makes of the layer's pins today (comments aside)
	$(VENV_AUDIT)/bin/$(LOCK_COMMAND) --output-file $(REL_REPORT_DIR)/runtime.lock \
		layers/shared/requirements.txt $(PIP_QUIET)
	diff <(grep -v '^ *#' requirements/runtime.lock) <(grep -v '^ *#' $(REL_REPORT_DIR)/runtime.lock)
	@# a fresh venv outside the tree (ruff and pytest must not see it)
	venv=$$(mktemp -d) && trap 'rm -rf "$$venv"' EXIT && $(PYTHON) -m venv "$$venv" && \
		"$$venv/bin/pip" install --quiet --require-virtualenv --require-hashes --no-deps \
			-r requirements/runtime.lock $(PIP_QUIET) && \
		"$$venv/bin/python" -c "import aws_lambda_powertools, boto3, requests"
	@echo "reliability-audit: bandit clean, lock fresh and installable with --require-hashes"

# Benchmarks: measured in .venv (the code and pins the tests use), charts drawn in .venv-bench
# (matplotlib), so the test virtualenv stays lean. Never part of `make test`: no timing is asserted.
VENV_BENCH := .venv-bench
BENCH_ENV := $(TEST_ENV) PYTHONPATH=functions/webhook_receiver:functions/decision_processor:functions/scheduled_jobs:layers/shared:local:.

$(VENV_BENCH)/.installed: requirements/bench.txt
	$(PYTHON) -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/pip install --quiet --require-virtualenv -r requirements/bench.txt $(PIP_QUIET)
	touch $@

.PHONY: bench
bench: $(VENV)/.installed $(VENV_BENCH)/.installed ## benchmarks (~3.5 min): benchmarks/results/latest.json, docs/performance.md and its charts
	$(BENCH_ENV) $(PY) -m benchmarks.run $(BENCH_ARGS)
	$(VENV_BENCH)/bin/python -m benchmarks.charts
	$(BENCH_ENV) $(PY) -m benchmarks.report

# -- capacity model: docs/performance.md, "Capacity model" ------------------------------------------
# A discrete-event simulation of the AWS path (capacity/), fed with benchmarks/results/latest.json
# (make bench), checked against the local stack. Runs in .venv, charts in .venv-bench (matplotlib).
CAPACITY_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
	AWS_ENDPOINT_URL= AWS_PROFILE= AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
	PYTHONPATH=functions/webhook_receiver:functions/decision_processor:functions/scheduled_jobs:layers/shared:local:.

.PHONY: capacity
capacity: .venv/.installed .venv-bench/.installed ## capacity model (~9 min): p50/p99 and cost at 1-1,000 guarantees/s, settings for each, checked against the local stack
	$(CAPACITY_ENV) .venv/bin/python -m capacity.run $(CAPACITY_ARGS)
	.venv-bench/bin/python -m capacity.charts
	$(CAPACITY_ENV) .venv/bin/python -m capacity.report
