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
