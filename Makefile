# Stockroom — every developer entry point. `make run` and `make test` set up
# what they need on a fresh machine: the Python tools go into the project's
# virtualenv .venv/ (pinned and hash-checked, requirements-dev.txt), never into
# the global interpreter. `make doctor` lists what else each target needs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# One package selection for every build, so Cargo resolves the same features
# each time and `make run` / `make test` reuse each other's artifacts.
CARGO_SELECTION := --workspace

.PHONY: help doctor deps test-deps lock watch build run stop status tenant metrics webhook-listen cli smoke smoke-local test soak test-unit fuzz bench lint security-lint fmt validate sam-build deploy deploy-guided clean-local

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Every Python tool, from the project's virtualenv.
VENV_BIN := $(CURDIR)/.venv/bin
PYTHON := $(VENV_BIN)/python

doctor: ## Check the prerequisites of make run, test, bench and deploy; print how to install what is missing
	@devtools/doctor.sh

deps: ## Create .venv/ with the pinned dev tools (moto server, cfn-lint, sam translator, cargo-lambda, schemathesis)
	@devtools/local.sh deps

test-deps: ## deps, plus Node modules and Chromium for the docs page test (installed where possible)
	@devtools/local.sh test-deps

# The locks (with hashes, every platform, Python >= 3.11) are compiled by uv
# from the direct pins in the .in files; uv itself lives in .venv-lock/.
UV_VERSION := 0.13.9
lock: ## Recompile requirements-dev.txt and devtools/requirements/*.txt from their .in files
	test -x .venv-lock/bin/uv || { python3 -m venv .venv-lock && .venv-lock/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION); }
	for in in requirements-dev.in devtools/requirements/sam.in devtools/requirements/checkov.in; do \
	  .venv-lock/bin/uv pip compile "$$in" --universal --python-version 3.11 --generate-hashes \
	    --no-header --emit-index-url --quiet -o "$${in%.in}.txt" || exit 1; \
	done

build: ## Build the function binaries and the local stack (debug)
	cargo build $(CARGO_SELECTION) --bins

run: deps build ## Start the whole API locally on http://127.0.0.1:3000 (Ctrl-C stops it)
	@STOCKROOM_PARAMETER_OVERRIDES="$(LOCAL_PARAMETERS) $${STOCKROOM_PARAMETER_OVERRIDES:-}" devtools/local.sh start --foreground

stop: ## Stop a local stack started in the background
	@devtools/local.sh stop

status: ## Show what the local stack is running
	@devtools/local.sh status

tenant: ## Create a tenant on the running local stack: make tenant NAME=acme
	@test -n "$(NAME)" || { echo "usage: make tenant NAME=<name>"; exit 2; }
	@test -f .local/env && curl -sf -o /dev/null http://127.0.0.1:$${STOCKROOM_API_PORT:-3000}/_local/health || { echo "the local stack is not running: start it with make run"; exit 1; }
	@source .local/env && $${CARGO_TARGET_DIR:-target}/debug/stockroom-admin create-tenant --name "$(NAME)"

metrics: ## Summarise the CloudWatch EMF metrics the local functions logged
	@$(PYTHON) devtools/metrics.py

webhook-listen: ## Print and verify webhook deliveries locally: make webhook-listen [PORT=4000] [SECRET=whsec_...] [FAIL=n]
	cargo build -q -p stockroom-cli
	$${CARGO_TARGET_DIR:-target}/debug/stockroom webhooks listen --port $${PORT:-4000} $${SECRET:+--secret "$$SECRET"} $${FAIL:+--fail $$FAIL}

# One function under `cargo lambda watch` (rebuilt and restarted on every
# change), while the running local stack (make run, in another terminal)
# sends that function's invocations to it: API routes, queue pollers and the
# Invoke API alike, with the stack's environment for the function. Ctrl-C
# hands the function back to the stack's own binary; the emulator keeps its data.
WATCH_PORT ?= 9100
watch: deps ## Live-reload one function of the running local stack: make watch FN=items-api [WATCH_PORT=9100]
	@test -n "$(FN)" || { echo "usage: make watch FN=<function, e.g. items-api>"; exit 2; }
	@set -euo pipefail; \
	  test -f .local/env || { echo "the local stack is not running: start it with make run (in another terminal)"; exit 1; }; \
	  invoke="http://127.0.0.1:$${STOCKROOM_INVOKE_PORT:-9000}"; \
	  mkdir -p .local/watch; \
	  curl -sf "$$invoke/_local/functions/$(FN)/env" >.local/watch/$(FN).env \
	    || { echo "the local stack on $$invoke does not answer, or has no function $(FN)"; exit 1; }; \
	  echo "building $(FN) (cargo lambda watch builds it on its own: the first time takes minutes, then it is incremental)"; \
	  cargo build -q --bin $(FN); \
	  release() { curl -sf -X DELETE "$$invoke/_local/functions/$(FN)/watch" >/dev/null && echo "$(FN): back to the stack's own binary"; }; \
	  trap release EXIT; \
	  curl -sf -X PUT -d '{"invoke_url":"http://127.0.0.1:$(WATCH_PORT)"}' "$$invoke/_local/functions/$(FN)/watch" >/dev/null; \
	  echo "$(FN): the local stack now invokes cargo lambda watch on 127.0.0.1:$(WATCH_PORT) (Ctrl-C ends)"; \
	  PATH="$(VENV_BIN):$$PATH" cargo lambda watch --bin $(FN) -A 127.0.0.1 -P $(WATCH_PORT) --env-file .local/watch/$(FN).env || true

cli: ## Build the command-line client (import with progress, items, webhooks listen): target/debug/stockroom
	cargo build -q -p stockroom-cli

# The local emulator is one Python process, ~10x slower than DynamoDB: more
# concurrent batch workers than it keeps up with, or AWS's 30 s worker timeout,
# only make invocations run out of time and burn receives. The local stack is
# new at every start, so it writes the sharded layout at once (a deployed stack
# gets there in two deploys: docs/operations.md#store-write-layout).
LOCAL_PARAMETERS := BatchWorkerMaxConcurrency=2 BatchWorkerTimeoutSeconds=120 StoreWriteLayout=sharded
# The tests revoke keys and wait out the authorizer cache, watch webhook
# retries and let upload batches expire, and read the change feed without
# waiting out its settle window: keep all four short there; the
# trial plan's daily quota is lowered so a test can use it up, and CORS is on
# (off by default) so its headers can be checked.
TEST_PARAMETERS := $(LOCAL_PARAMETERS) ChangeFeedSettleSeconds=2 AuthorizerCacheTtlSeconds=2 WebhookRetrySchedule=1,1,1 UploadUrlTtlSeconds=5 UploadGraceSeconds=0 TrialPlanDailyQuota=30 CorsAllowOrigin=https://app.example.test

# The load benchmark measures the stack, not the limits: lift the plan's and
# the stage's rates for it.
BENCH_PARAMETERS := $(LOCAL_PARAMETERS) StandardPlanRateLimit=100000 StandardPlanBurstLimit=100000 StageRateLimit=100000 StageBurstLimit=100000

test: test-deps ## Unit + integration tests (starts and stops the local stack)
	cargo build $(CARGO_SELECTION) --all-targets
	@set -euo pipefail; \
	  STOCKROOM_PARAMETER_OVERRIDES="$(TEST_PARAMETERS)" STOCKROOM_FAULT_PROXY_PORT=$${STOCKROOM_FAULT_PROXY_PORT:-4599} devtools/local.sh start; \
	  trap 'devtools/local.sh stop' EXIT; \
	  source .local/env; \
	  status=0; \
	  cargo test $(CARGO_SELECTION) --no-fail-fast || status=$$?; \
	  echo "== smoke suite (make smoke) against the local stack"; \
	  $(MAKE) --no-print-directory smoke-local SMOKE_REVOCATION_WAIT=$(TEST_REVOCATION_WAIT) || status=$$?; \
	  echo "== large imports (the ignored tests), alone on the stack (last: their events drain for minutes)"; \
	  cargo test $(CARGO_SELECTION) --no-fail-fast -- --ignored || status=$$?; \
	  echo "== IAM as AWS enforces it: the evaluator's unit tests, then what the run needed"; \
	  $(PYTHON) -m unittest discover -s devtools -p 'test_*.py' || status=$$?; \
	  $(PYTHON) devtools/iam.py report --endpoint "$$AWS_ENDPOINT_URL" --fail-on-denials || status=$$?; \
	  exit $$status

# The large imports (the ignored tests) at soak size: a 200,000-row upload and
# the crash test's 100,000 records, about 30 minutes on 2 cores. `make test`
# runs the same tests on smaller files (STOCKROOM_SOAK unset).
soak: test-deps ## The large imports at full size (200,000-row upload, 100,000-record crash test)
	cargo build $(CARGO_SELECTION) --all-targets
	@set -euo pipefail; \
	  STOCKROOM_PARAMETER_OVERRIDES="$(TEST_PARAMETERS)" STOCKROOM_FAULT_PROXY_PORT=$${STOCKROOM_FAULT_PROXY_PORT:-4599} devtools/local.sh start; \
	  trap 'devtools/local.sh stop' EXIT; \
	  source .local/env; \
	  STOCKROOM_SOAK=1 cargo test $(CARGO_SELECTION) --no-fail-fast -- --ignored

# The smoke suite (devtools/smoke) checks a running stack through its public
# API only, with its URL and a tenant's key holding every scope; it cleans up
# after itself and exits non-zero when a check failed. Revoking a key takes
# effect after the authorizer cache TTL (300 s by default): the suite checks it
# only when STOCKROOM_SMOKE_REVOCATION_WAIT (seconds) covers that TTL.
smoke: ## Smoke-test a running stack: make smoke STOCKROOM_URL=https://... STOCKROOM_KEY=sk_live_... [STOCKROOM_WEBHOOK_URL=https://...]
	@cargo build -q $(CARGO_SELECTION) --bin stockroom-smoke
	@STOCKROOM_URL="$(STOCKROOM_URL)" STOCKROOM_KEY="$(STOCKROOM_KEY)" STOCKROOM_WEBHOOK_URL="$(STOCKROOM_WEBHOOK_URL)" \
	  $${CARGO_TARGET_DIR:-target}/debug/stockroom-smoke

# make test's stack caches authorizer decisions for 2 s (TEST_PARAMETERS):
# 15 s covers that and a cold authorizer on the emulator.
TEST_REVOCATION_WAIT := 15
SMOKE_REVOCATION_WAIT ?= 0

# The smoke suite against the running local stack (make run / make test): a
# fresh tenant with every scope, and the CLI's webhook receiver on a free
# loopback port (only the local stack may deliver to http://127.0.0.1). Needs
# the binaries of make build.
smoke-local: ## The smoke suite against the running local stack (fresh tenant, local webhook receiver)
	@set -euo pipefail; \
	  bin=$${CARGO_TARGET_DIR:-target}/debug; \
	  for b in stockroom-smoke stockroom-admin stockroom; do \
	    test -x "$$bin/$$b" || { echo "$$bin/$$b is not built: run make build"; exit 1; }; \
	  done; \
	  test -f .local/env || { echo "the local stack is not running: start it with make run"; exit 1; }; \
	  source .local/env; \
	  curl -sf -o /dev/null "$$STOCKROOM_API_URL/_local/health" || { echo "the local stack does not answer on $$STOCKROOM_API_URL: start it with make run"; exit 1; }; \
	  tenant="$$("$$bin/stockroom-admin" create-tenant --name smoke | tail -n 1)"; \
	  key="$$($(PYTHON) -c 'import json,sys; print(json.loads(sys.argv[1])["api_key"])' "$$tenant")"; \
	  rx_log=.local/logs/smoke-receiver.log; \
	  "$$bin/stockroom" webhooks listen --port 0 >"$$rx_log" 2>&1 & rx=$$!; \
	  trap 'kill $$rx 2>/dev/null || true' EXIT; \
	  for _ in $$(seq 100); do grep -q '^listening on' "$$rx_log" && break; sleep 0.1; done; \
	  rx_url="$$(sed -n 's|^listening on \(http://[^ ]*\).*|\1|p' "$$rx_log")"; \
	  test -n "$$rx_url" || { echo "the webhook receiver did not start (see $$rx_log)"; exit 1; }; \
	  STOCKROOM_URL="$$STOCKROOM_API_URL" STOCKROOM_KEY="$$key" STOCKROOM_WEBHOOK_URL="$$rx_url" \
	    STOCKROOM_SMOKE_REVOCATION_WAIT=$(SMOKE_REVOCATION_WAIT) "$$bin/stockroom-smoke"

# Benchmarks measure the deployed profile: one release build gives the
# functions, hello-lambda (the cold-start reference), the local stack and the
# bench tool; the stack runs those release binaries.
RELEASE_DIR = $${CARGO_TARGET_DIR:-target}/release
COLD_START_ROUNDS ?= 15

bench: deps ## Benchmarks, release profile (starts and stops the local stack); method and figures: docs/performance.md
	cargo build --release $(CARGO_SELECTION) --bins
	cargo bench -p stockroom-bench --features handler-bench --bench handler
	$(RELEASE_DIR)/stockroom-bench handler-summary
	$(RELEASE_DIR)/stockroom-bench sizes $(RELEASE_DIR)
	@set -euo pipefail; \
	  export STOCKROOM_BIN_DIR="$(RELEASE_DIR)"; \
	  STOCKROOM_PARAMETER_OVERRIDES="$(BENCH_PARAMETERS)" STOCKROOM_FAULT_PROXY_PORT=$${STOCKROOM_FAULT_PROXY_PORT:-4599} devtools/local.sh start; \
	  trap 'devtools/local.sh stop' EXIT; \
	  source .local/env; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" cold-start "$$STOCKROOM_BIN_DIR" $(COLD_START_ROUNDS); \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" cold-start "$$STOCKROOM_BIN_DIR" $(COLD_START_ROUNDS) tls warm; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" cold-start "$$STOCKROOM_BIN_DIR" $(COLD_START_ROUNDS) tls warm ahead; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" split-memory; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" pipeline $${BENCH_RECORDS:-100000}; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" lean-reads; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" load; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" events-latency $${BENCH_ADJUSTMENTS:-500}; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" reservations $${BENCH_RESERVATIONS:-2000}; \
	  "$$STOCKROOM_BIN_DIR/stockroom-bench" heat $${BENCH_HEAT_RECORDS:-100000}

# Parser fuzzing: cargo-fuzz (pinned) with libFuzzer and AddressSanitizer. The
# machine's one toolchain is stable: RUSTC_BOOTSTRAP lets it take the -Z flags
# cargo-fuzz passes. New inputs go to .local/fuzz/<target>; the seeds in
# fuzz/corpus/ are committed; a crash fails the run and leaves its input in
# .local/fuzz/artifacts/<target>/.
CARGO_FUZZ_VERSION := 0.13.1
FUZZ_TARGETS := json_bodies cursor batch_records
FUZZ_SECONDS ?= 60
fuzz: ## Fuzz the body parsers, the cursor decoder and the batch record validator, FUZZ_SECONDS (60) each
	@command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	@set -euo pipefail; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .local/fuzz/$$t .local/fuzz/artifacts/$$t; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $$t .local/fuzz/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 \
	    -artifact_prefix=.local/fuzz/artifacts/$$t/ -print_final_stats=1 2>&1 \
	    | grep -E '^(==|INFO: seed|#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked|SUMMARY|Done'; \
	done

# The SAM template and its nested application (alarms, metric filters, the
# dashboard: resource Observability, Location ops/observability.yaml). Every
# linter reads both; sam build and sam deploy follow the Location themselves.
TEMPLATES := template.yaml ops/observability.yaml

test-unit: ## Unit tests only (no local stack)
	cargo test --workspace --lib --bins

lint: deps security-lint ## rustfmt, clippy (warnings are errors), cfn-lint, checkov
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV_BIN)/cfn-lint $(TEMPLATES)

# checkov has its own virtualenv too: it pins an older boto3 than the local
# stack's. The copy of the lock inside marks the venv current.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.requirements.txt

$(CHECKOV_STAMP): devtools/requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/pip || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $<
	cp $< $@

security-lint: $(CHECKOV_STAMP) ## checkov on template.yaml and ops/observability.yaml: clean, each waiver justified in the resource's Metadata
	$(CHECKOV) $(addprefix --file ,$(TEMPLATES)) --framework cloudformation --compact --quiet --skip-download

fmt: ## Format the code
	cargo fmt --all

# SAM CLI lives in its own virtualenv with what `sam build` runs: cargo-lambda
# and zig (ziglang, which cargo-lambda finds as `python3 -m ziglang` through
# the venv's PATH). Installed globally, SAM CLI upgrades the pinned cfn-lint /
# sam-translator / boto3 that the local stack relies on.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.requirements.txt
# The samconfig.toml environment of sam build / sam deploy: dev or prod.
ENV ?= dev

$(SAM_STAMP): devtools/requirements/sam.txt
	test -x $(SAM_VENV)/bin/pip || python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $<
	cp $< $@

validate: $(SAM_STAMP) ## sam validate --lint of template.yaml and ops/observability.yaml (offline, no credentials)
	for t in $(TEMPLATES); do $(SAM) validate --lint --region us-east-1 --template "$$t" || exit 1; done

# sam build copies the nested application to .aws-sam/build/Observability/
# (Location rewritten); sam deploy uploads it to the artifacts bucket.
sam-build: $(SAM_STAMP) ## sam build for ENV (dev): every function's bootstrap for arm64 (cargo-lambda + zig), no prompt
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(abspath $(SAM_VENV))/bin:$$PATH" $(SAM) build --config-env $(ENV)

deploy: sam-build ## Deploy ENV (dev|prod) with samconfig.toml's settings, no prompt: make deploy ENV=dev
	$(SAM) deploy --config-env $(ENV)

deploy-guided: sam-build ## First deploy of ENV to an account, with sam's questions: make deploy-guided ENV=dev
	$(SAM) deploy --guided --config-env $(ENV)

clean-local: ## Forget the local stack's state (.local/)
	@devtools/local.sh stop || true
	rm -rf .local
