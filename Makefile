# One entry point for every task. `make test` sets itself up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Interpreters. python3.13 is the Lambda runtime's: .venv (tests, tools, the local stack's function
# processes), SAM, the audit and bench tools and `sam build` run on it. checkov 3.3.30 declares Python
# 3.9-3.12, so its venv keeps the machine's python3.11, which also runs `make py311-compat` (the product
# must stay importable on 3.11+). pyenv provides both here; PYENV_VERSION is ignored by plain binaries.
PYENV_VERSION ?= 3.13.0:3.11.7
PYTHON ?= PYENV_VERSION=$(PYENV_VERSION) python3.13
PYTHON311 ?= PYENV_VERSION=$(PYENV_VERSION) python3.11
VENV := .venv
VENV_SAM := .venv-sam
VENV_CHECKOV := .venv-checkov
PY := $(VENV)/bin/python
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
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# A virtualenv from its lock, every file checked against the lock's hashes. Rebuilt whole when the lock
# changes, so nothing from an older lock (or an older interpreter) stays behind.
define install_venv
rm -rf $(1)
$(2) -m venv $(1)
$(1)/bin/pip install --quiet --require-virtualenv --require-hashes -r $(3) $(PIP_QUIET)
touch $(1)/.installed
endef

$(VENV)/.installed: requirements/dev.txt | check-runtime
	$(call install_venv,$(VENV),$(PYTHON),requirements/dev.txt)

$(VENV_SAM)/.installed: requirements/sam.txt | check-runtime
	$(call install_venv,$(VENV_SAM),$(PYTHON),requirements/sam.txt)

$(VENV_CHECKOV)/.installed: requirements/checkov.txt | check-python311
	$(call install_venv,$(VENV_CHECKOV),$(PYTHON311),requirements/checkov.txt)

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
typecheck: $(VENV)/.installed ## mypy (strict) on the functions, the layer, the local stack, testkit and the benchmarks
	$(VENV)/bin/mypy layers/shared/geft functions/webhook_receiver/webhook_receiver \
		functions/decision_processor/decision_processor functions/scheduled_jobs/scheduled_jobs \
		functions/audit_trail/audit_trail functions/deploy_hooks/deploy_hooks local/geft_local ops/geft_ops ops/geft_checks testkit \
		benchmarks capacity

# The prod configuration is also rendered as CloudFormation deploys it (Rules checked, parameters and
# conditions resolved, SAM transform applied: testkit/sam_transform.py) and linted and scanned as such:
# the template alone passes checkov because checkov accepts either branch of an !If.
RENDERED_PROD := .aws-sam/rendered/prod.json

.PHONY: validate
validate: $(VENV)/.installed $(VENV_SAM)/.installed $(VENV_CHECKOV)/.installed ## sam validate --lint, cfn-lint, checkov (template and rendered prod)
	$(VENV_SAM)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV_CHECKOV)/bin/checkov --config-file .checkov.yaml --file template.yaml
	PYTHONPATH=. $(PY) tests/support/sam_render.py --config-env prod --output $(RENDERED_PROD)
	@# W2001: a rendered template has every parameter already substituted, so none is "used"
	$(VENV)/bin/cfn-lint --ignore-checks W2001 -- $(RENDERED_PROD)
	$(VENV_CHECKOV)/bin/checkov --config-file .checkov.yaml --file $(RENDERED_PROD)

.PHONY: check-runtime
check-runtime:
	@$(PYTHON) --version >/dev/null 2>&1 || { \
		echo "python3.13 (the Lambda runtime) not found: pyenv install 3.13.0, or set PYENV_VERSION or PYTHON" >&2; exit 1; }

.PHONY: check-python311
check-python311:
	@$(PYTHON311) --version >/dev/null 2>&1 || { \
		echo "python3.11 not found (checkov's venv, make py311-compat): set PYENV_VERSION or PYTHON311" >&2; exit 1; }

.PHONY: build
build: $(VENV_SAM)/.installed check-runtime ## sam build (no container): python3.13, arm64
	PYENV_VERSION=$(PYENV_VERSION) $(VENV_SAM)/bin/sam build --cached --parallel $(PIP_QUIET)

.PHONY: pytest
pytest: $(VENV)/.installed ## the test suite only
	$(TEST_ENV) $(PY) -m pytest

.PHONY: test
test: lint typecheck validate build lock-check py311-compat pytest ## everything CI runs

.PHONY: policy-check
policy-check: $(VENV)/.installed ## validate a policy file offline: make policy-check POLICY=file.json
	bin/geft-ops policy check $(POLICY)

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

# -- supply chain: docs/decisions.md ---------------------------------------------------------------
# One lock with hashes per requirements/*.in, for the interpreter and platform that installs it:
# NAME := lock file, Python version, platform. The layer's lock is the Lambda target's (python3.13 on
# arm64 Linux); the rest are this machine's. uv resolves for a target without needing its interpreter,
# and reads only the public registry (no local index, no user config), which serves every hash.
LOCK_runtime := layers/shared/requirements.txt 3.13 aarch64-manylinux_2_34
LOCK_dev := requirements/dev.txt 3.13 x86_64-manylinux_2_28
LOCK_sam := requirements/sam.txt 3.13 x86_64-manylinux_2_28
LOCK_checkov := requirements/checkov.txt 3.11 x86_64-manylinux_2_28
LOCK_audit := requirements/audit.txt 3.13 x86_64-manylinux_2_28
LOCK_bench := requirements/bench.txt 3.13 x86_64-manylinux_2_28
LOCKS := runtime dev sam checkov audit bench  # runtime first: dev.in is constrained by it
LOCK_FILES := $(foreach name,$(LOCKS),$(word 1,$(LOCK_$(name))))
RUNTIME_LOCK := $(word 1,$(LOCK_runtime))
LOCK_ROOT ?= .
LOCK_ARGS ?=
LOCK_ENV := env -u UV_INDEX -u UV_INDEX_URL -u UV_DEFAULT_INDEX -u UV_EXTRA_INDEX_URL -u UV_FIND_LINKS \
	UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never
# $(call compile_lock,NAME): requirements/NAME.in -> LOCK_ROOT/<its lock>, keeping the versions already
# in that lock wherever they still satisfy the .in file.
compile_lock = $(LOCK_ENV) $(VENV)/bin/uv pip compile --quiet --generate-hashes \
	--custom-compile-command "make lock" --python-version $(word 2,$(LOCK_$(1))) \
	--python-platform $(word 3,$(LOCK_$(1))) $(LOCK_ARGS) --output-file $(LOCK_ROOT)/$(word 1,$(LOCK_$(1))) \
	requirements/$(1).in
# The wheels Lambda gets: SAM's pip builder asks for these platforms for python3.13 on arm64.
LAMBDA_WHEELS := --only-binary=:all: --implementation cp --python-version 3.13 --abi cp313 \
	$(foreach tag,manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_34,--platform $(tag)_aarch64)
define newline


endef

.PHONY: lock
lock: $(VENV)/.installed ## re-resolve requirements/*.in into hashed locks (LOCK_ARGS=--upgrade moves the pins)
	$(foreach name,$(LOCKS),$(call compile_lock,$(name))$(newline))

.PHONY: lock-check
lock-check: $(VENV)/.installed build ## every lock fresh; the layer's installs with --require-hashes and is what sam build shipped
	@# fresh: `make lock` into a copy gives the committed locks back, comments aside
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	for lock in $(LOCK_FILES); do mkdir -p "$$tmp/$$(dirname $$lock)" && cp $$lock "$$tmp/$$lock"; done && \
	$(MAKE) --no-print-directory lock LOCK_ROOT="$$tmp" && stale= && \
	for lock in $(LOCK_FILES); do \
		diff -u <(grep -v '^ *#' $$lock) <(grep -v '^ *#' "$$tmp/$$lock") >&2 || stale="$$stale $$lock"; done && \
	if [ -n "$$stale" ]; then echo "lock-check: stale, run make lock:$$stale" >&2; exit 1; fi
	@# the layer's lock: a hash-checked install on python3.13 here, a hash-checked download of Lambda's
	@# arm64 wheels, and sam build's layer holds exactly those files (SAM fetches native arm64 wheels
	@# by version without checking hashes, so this is where their hashes are checked)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && $(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install --quiet --require-virtualenv --require-hashes -r $(RUNTIME_LOCK) $(PIP_QUIET) && \
	"$$tmp/venv/bin/python" -c "import aws_lambda_powertools, boto3, requests" && \
	"$$tmp/venv/bin/pip" download --quiet --require-hashes $(LAMBDA_WHEELS) --dest "$$tmp/wheels" \
		-r $(RUNTIME_LOCK) $(PIP_QUIET) && \
	$(PY) -m tests.support.layer_lock $(RUNTIME_LOCK) .aws-sam/build/SharedLayer/python "$$tmp/wheels"

VENV_PY311 := .venv-py311

$(VENV_PY311)/.installed: $(RUNTIME_LOCK) | check-python311
	$(call install_venv,$(VENV_PY311),$(PYTHON311),$(RUNTIME_LOCK))

.PHONY: py311-compat
py311-compat: $(VENV_PY311)/.installed ## the product still compiles (all of it) and imports (what ships, and ops) on python3.11
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		PYTHONPYCACHEPREFIX="$$tmp" $(VENV_PY311)/bin/python -m compileall -q layers/shared functions ops local
	$(TEST_ENV) PYTHONDONTWRITEBYTECODE=1 \
		PYTHONPATH=layers/shared:functions/webhook_receiver:functions/decision_processor:functions/scheduled_jobs:ops \
		$(VENV_PY311)/bin/python -m tests.support.import_smoke geft webhook_receiver decision_processor \
		scheduled_jobs geft_ops geft_checks

# -- reliability: docs/reliability.md ----------------------------------------------------------------
VENV_AUDIT := .venv-audit
REL_FUZZ_EXAMPLES ?= 10000
REL_REPORT_DIR ?= .reliability
# per-test limit (pytest-timeout): the fuzz test alone takes ~30 ms a case here
REL_TEST_TIMEOUT ?= 3600
RELIABILITY_TESTS := tests/integration/test_receiver_fuzz.py tests/integration/test_decision_faults.py \
	tests/integration/test_crash_points.py tests/integration/test_secret_rotation.py \
	tests/integration/log_hygiene tests/unit/test_hostile_numbers.py tests/e2e/test_load.py
$(VENV_AUDIT)/.installed: requirements/audit.txt | check-runtime
	$(call install_venv,$(VENV_AUDIT),$(PYTHON),requirements/audit.txt)

.PHONY: reliability
reliability: $(VENV)/.installed $(VENV_AUDIT)/.installed ## 10,000 fuzzed requests, faults, crashes, races, load (slow tests included), then reliability-audit
	rm -rf $(REL_REPORT_DIR)
	REL_FUZZ_EXAMPLES=$(REL_FUZZ_EXAMPLES) REL_REPORT_DIR=$(REL_REPORT_DIR) $(TEST_ENV) \
		$(PY) -m pytest -m "" --timeout=$(REL_TEST_TIMEOUT) $(RELIABILITY_TESTS)
	$(PY) -m tests.support.reliability_report $(REL_REPORT_DIR)
	$(MAKE) --no-print-directory reliability-audit

.PHONY: reliability-audit
reliability-audit: $(VENV)/.installed $(VENV_AUDIT)/.installed ## bandit, lock-check, then pip-audit of the layer's lock (NOT AUDITED fails in CI)
	$(VENV_AUDIT)/bin/bandit -q -r functions layers
	$(VENV_AUDIT)/bin/bandit -q -c requirements/bandit-ops.yaml -r ops
	$(VENV_AUDIT)/bin/bandit -q -c requirements/bandit-local.yaml -r local
	$(MAKE) --no-print-directory lock-check
	mkdir -p $(REL_REPORT_DIR)
	@# pip-audit says "No known vulnerabilities found" even when it audited nothing: its report decides
	$(VENV_AUDIT)/bin/pip-audit --disable-pip --require-hashes --format json \
		--output $(REL_REPORT_DIR)/pip-audit.json -r $(RUNTIME_LOCK) 2>&1 \
		| { grep -v -e "is ignored: it is neither" -e "No known vulnerabilities found" || true; }
	$(PY) -m tests.support.pip_audit_verdict $(REL_REPORT_DIR)/pip-audit.json

# Benchmarks: measured in .venv (the code and pins the tests use), charts drawn in .venv-bench
# (matplotlib), so the test virtualenv stays lean. Never part of `make test`: no timing is asserted.
VENV_BENCH := .venv-bench
BENCH_ENV := $(TEST_ENV) PYTHONPATH=functions/webhook_receiver:functions/decision_processor:functions/scheduled_jobs:layers/shared:local:.

$(VENV_BENCH)/.installed: requirements/bench.txt | check-runtime
	$(call install_venv,$(VENV_BENCH),$(PYTHON),requirements/bench.txt)

.PHONY: bench
bench: $(VENV)/.installed $(VENV_BENCH)/.installed ## benchmarks (~6.5 min): benchmarks/results/latest.json, docs/performance.md and its charts
	$(BENCH_ENV) $(PY) -m benchmarks.run $(BENCH_ARGS)
	$(VENV_BENCH)/bin/python -m benchmarks.charts
	$(BENCH_ENV) $(PY) -m benchmarks.report

# -- the policy lab: a day's traffic for a running local stack (docs/operations.md, "Changing the
# decision policy with evidence"). Against `make local` in another terminal; same LOCAL_RUN_DIR.
TRAFFIC_ARGS ?=

.PHONY: traffic
traffic: $(VENV)/.installed ## a day's guarantee traffic for the running make local: TRAFFIC_ARGS="--sessions 200 --seed 1"
	$(LOCAL_ENV) $(PY) -m geft_local.traffic $(TRAFFIC_ARGS)

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

# -- checks against the real thing: README "After sam deploy", docs/operations.md ---------------------
# make smoke STACK=name [REGION=r] [PROFILE=p] reads a deployed stack; LOCAL=1 reads the running make local.
# Its region is the one you give, your AWS_DEFAULT_REGION or your profile's: never the us-east-1 this
# Makefile sets (for the tests) when you set none.
SMOKE_ENV := env $(if $(filter file,$(origin AWS_DEFAULT_REGION)),-u AWS_DEFAULT_REGION) \
	$(if $(filter file,$(origin AWS_REGION)),-u AWS_REGION)
# make contract SESSION=<id> with FLINKS_BASE_URL, FLINKS_USERNAME and FLINKS_PASSWORD (FLINKS_CLIENT_ID,
# FLINKS_API_KEY) in the environment; POLICY (above) names the policy whose facts must be present.
SESSION ?=

.PHONY: smoke
smoke: $(VENV)/.installed ## after sam deploy: make smoke STACK=name [REGION= PROFILE=]; LOCAL=1: the running make local
	$(SMOKE_ENV) bin/geft-check smoke $(if $(LOCAL),--local,--stack "$(STACK)") \
		$(if $(REGION),--region "$(REGION)") $(if $(PROFILE),--profile "$(PROFILE)")

.PHONY: contract
contract: $(VENV)/.installed ## Flinks' answers next to what the code reads (read-only): make contract SESSION=id
	bin/geft-check contract --session "$(SESSION)" --policy "$(POLICY)"


# -- docs: "A day in the life" (docs/operations.md, README.md) from a real run ----------------------------
# Plays a day on make local's entry point (own free port and temporary run folder) and rewrites both
# sections; CHECK=1 plays it again and fails with a diff when the docs tell another story.
.PHONY: day-in-the-life
day-in-the-life: $(VENV)/.installed ## regenerate the "day in the life" docs from a real run (CHECK=1: verify them)
	$(LOCAL_ENV) $(PY) -m geft_local.day_in_the_life $(if $(CHECK),--check,--write)
