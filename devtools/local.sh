#!/usr/bin/env bash
# Stockroom's Docker-free local stack: moto server (DynamoDB & co) + the
# template-driven API Gateway / Lambda emulator (target/debug/stockroom-local).
#
#   devtools/local.sh deps                 the project virtualenv .venv/ (requirements-dev.txt)
#   devtools/local.sh test-deps            deps + Node modules and Chromium for the docs page test
#   devtools/local.sh start [--foreground] moto + provision + gateway (+ demo tenant)
#   devtools/local.sh stop                 stop what `start` started (and nothing else)
#   devtools/local.sh status
#   devtools/local.sh render               only rewrite .local/stack.json and .local/env
#
# Environment: MOTO_PORT (5000), STOCKROOM_API_PORT (3000), STOCKROOM_INVOKE_PORT
# (9000), STOCKROOM_BIN_DIR (target/debug), STOCKROOM_DEMO_API_KEY (the demo
# tenant's key; default: the sample one of events/authorizer/demo-key.json), STOCKROOM_ECHO_LOGS=1 (function output on the
# console; the default in --foreground), STOCKROOM_LOCAL_ARGS (extra
# stockroom-local flags, e.g. "--env RUST_LOG=debug"), STOCKROOM_IAM_ENFORCEMENT
# (on; "off" lets every function call everything, as plain moto does),
# STOCKROOM_BOOTSTRAP_PYTHON (python3: the interpreter .venv/ is made from).
#
# Every Python tool runs from .venv/, which `deps` creates with `python3 -m
# venv`: nothing is installed into the global interpreter (PEP 668 refuses
# that on Debian 12+, Ubuntu 23.04+ and Homebrew anyway).
# Portable to macOS's bash 3.2 and BSD tools: no /proc, no GNU-only flags, and
# empty arrays expanded as ${a[@]+"${a[@]}"} (bash < 4.4 calls them unbound).
#
# The function binaries must already be built (the Makefile does that); this
# script builds nothing but stockroom-local itself when it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STATE="$ROOT/.local"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
MOTO_PORT="${MOTO_PORT:-5000}"
API_PORT="${STOCKROOM_API_PORT:-3000}"
INVOKE_PORT="${STOCKROOM_INVOKE_PORT:-9000}"
# Set (make test does) to put the fault-injecting proxy between the functions
# and the emulator (devtools/local-stack/src/faults.rs).
FAULT_PROXY_PORT="${STOCKROOM_FAULT_PROXY_PORT:-}"
# Cargo puts binaries under CARGO_TARGET_DIR when it is set.
BIN_DIR="${STOCKROOM_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}"
ENDPOINT="http://127.0.0.1:$MOTO_PORT"
API_URL="http://127.0.0.1:$API_PORT"
VENV="$ROOT/.venv"
PYTHON="$VENV/bin/python"
# The demo tenant's key: the one events/authorizer/demo-key.json sends.
DEMO_API_KEY="${STOCKROOM_DEMO_API_KEY:-sk_test_demo_key_for_local_development_only}"
BOOTSTRAP_PYTHON="${STOCKROOM_BOOTSTRAP_PYTHON:-python3}"

log() { printf '\033[1m[local]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ pid records
# .local/pids: "<name> <pid> <cmdline marker>" per line. A pid only counts as
# ours while its command line still contains the marker (pids get reused).
record_pid() { # name pid marker
    mkdir -p "$STATE"
    forget_pid "$1"
    echo "$1 $2 $3" >>"$PIDS"
}

forget_pid() { # name
    [[ -f "$PIDS" ]] || return 0
    local tmp="$PIDS.tmp"
    grep -v "^$1 " "$PIDS" >"$tmp" || true
    mv "$tmp" "$PIDS"
}

is_ours() { # pid marker (ps -o command= is POSIX: Linux and macOS alike)
    ps -p "$1" -o command= 2>/dev/null | grep -qF -- "$2"
}

pid_of() { # name -> pid if recorded and still ours
    [[ -f "$PIDS" ]] || return 1
    local name pid marker
    while read -r name pid marker; do
        if [[ "$name" == "$1" ]] && is_ours "$pid" "$marker"; then
            echo "$pid"
            return 0
        fi
    done <"$PIDS"
    return 1
}

stop_one() { # name
    local pid
    if pid="$(pid_of "$1")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$1 (pid $pid) did not stop on SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $1 (pid $pid)"
    fi
    forget_pid "$1"
}

# ------------------------------------------------------------------ helpers
http_ok() { # url -> 0 if it answers 2xx
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
}

wait_for() { # url seconds pid-to-watch name
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        http_ok "$1" && return 0
        if [[ -n "${3:-}" ]] && ! kill -0 "$3" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

port_busy() { # port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ------------------------------------------------------------------ deps
# .venv/ holds every Python tool at the versions and hashes of
# requirements-dev.txt; a copy of the lock it was installed from marks it
# current (.venv/.requirements-dev.txt).
venv_usable() { [[ -x "$PYTHON" ]] && "$PYTHON" -c '' 2>/dev/null; }
require_venv() { [[ -x "$PYTHON" ]] || die ".venv/ is missing: run make deps (make run and make test do)"; }

cmd_deps() {
    local lock="$ROOT/requirements-dev.txt" stamp="$VENV/.requirements-dev.txt"
    [[ -f "$lock" ]] || die "missing $lock"
    if venv_usable && cmp -s "$lock" "$stamp"; then
        log "dev tools up to date in .venv/ (requirements-dev.txt)"
        return 0
    fi
    command -v "$BOOTSTRAP_PYTHON" >/dev/null ||
        die "$BOOTSTRAP_PYTHON is missing: Python >= 3.11 is needed (make doctor says how to install it)"
    "$BOOTSTRAP_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$("$BOOTSTRAP_PYTHON" --version 2>&1) is too old: Python >= 3.11 is needed (or set STOCKROOM_BOOTSTRAP_PYTHON)"
    # A venv made by another interpreter (upgraded or removed since) is rebuilt.
    if ! venv_usable; then
        rm -rf "$VENV"
        log "creating .venv/ with $("$BOOTSTRAP_PYTHON" --version 2>&1)"
        "$BOOTSTRAP_PYTHON" -m venv "$VENV" ||
            die "python3 -m venv failed: install the venv module (Debian/Ubuntu: sudo apt-get install python3-venv)"
    fi
    log "installing requirements-dev.txt into .venv/ (pinned, hash-checked)"
    rm -f "$stamp"
    "$PYTHON" -m pip install --disable-pip-version-check -q --require-hashes --no-deps -r "$lock" ||
        die "pip install -r requirements-dev.txt failed (above)"
    cp "$lock" "$stamp"
}

cmd_test_deps() {
    cmd_deps
    browser_deps
}

# The docs page test (tests/docs) drives Debian's Chromium with playwright-core.
# Debian packages, where this runs as root with apt-get (the package lists
# are refreshed only when the first try fails).
can_apt() { command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; }
apt_install() { # package...
    apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

browser_deps() {
    if [[ ! -x /usr/bin/chromium ]]; then
        if can_apt; then
            log "installing chromium (Debian package) for the docs page test"
            apt_install chromium || die "could not install chromium (apt-get install chromium)"
        else
            log "warning: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get); the docs page test will fail and say how to install it"
        fi
    fi
    if ! command -v npm >/dev/null && can_apt; then
        log "installing Node.js and npm (Debian packages) for the docs page test and the OpenAPI linters"
        apt_install nodejs npm || log "warning: could not install nodejs and npm with apt-get"
    fi
    if ! command -v npm >/dev/null; then
        log "warning: Node.js/npm are missing and cannot be installed here; the docs page test will fail and say how to install them"
        return 0
    fi
    local docs="$ROOT/tests/docs"
    if [[ ! -f "$docs/node_modules/.package-lock.json" ]] || ! cmp -s <(sed -n '/"node_modules\/playwright-core"/,/}/p' "$docs/package-lock.json") <(sed -n '/"node_modules\/playwright-core"/,/}/p' "$docs/node_modules/.package-lock.json"); then
        log "installing tests/docs node modules (npm ci)"
        (cd "$docs" && npm ci --no-audit --no-fund --silent) || die "npm ci failed in tests/docs"
    fi
    # The OpenAPI linters and breaking-change check (tests/contract/lint.rs).
    # Their install scripts are usage analytics and a banner: not run.
    local contract="$ROOT/tests/contract"
    if ! cmp -s "$contract/package-lock.json" "$contract/node_modules/.stockroom-lock.json"; then
        log "installing tests/contract node modules (npm ci): Spectral, Redocly, Optic"
        (cd "$contract" && npm ci --ignore-scripts --no-audit --no-fund --silent) || die "npm ci failed in tests/contract"
        cp "$contract/package-lock.json" "$contract/node_modules/.stockroom-lock.json"
    fi
}

# ------------------------------------------------------------------ start
start_moto() {
    local pid
    if pid="$(pid_of moto)" && http_ok "$ENDPOINT/moto-api/"; then
        log "moto server already running (pid $pid) on $ENDPOINT"
        return 0
    fi
    forget_pid moto
    if http_ok "$ENDPOINT/moto-api/"; then
        log "warning: a moto server we did not start answers on $ENDPOINT; using it (stop will leave it alone)"
        return 0
    fi
    port_busy "$MOTO_PORT" && die "port $MOTO_PORT is in use by something else (set MOTO_PORT)"
    "$PYTHON" -c 'import moto.server, flask_cors' 2>/dev/null || die "moto[server] is not in .venv/: run make deps"
    # Each function calls the emulator with its own access key; the emulator
    # authorises every call against the function's role in template.yaml, as
    # AWS does (devtools/iam.py), unless told not to.
    local iam_flag=(--iam-policies "$STATE/iam.json")
    case "${STOCKROOM_IAM_ENFORCEMENT:-on}" in
    on) ;;
    off) iam_flag=() && log "IAM enforcement is off (STOCKROOM_IAM_ENFORCEMENT=off): every function may call everything" ;;
    *) die "STOCKROOM_IAM_ENFORCEMENT must be on or off" ;;
    esac
    log "starting moto server on $ENDPOINT (log: .local/logs/moto.log)"
    # devtools/moto_server.py = moto_server with DynamoDB calls serialised and
    # IAM enforced (see there).
    nohup "$PYTHON" "$ROOT/devtools/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT" ${iam_flag[@]+"${iam_flag[@]}"} >>"$LOGS/moto.log" 2>&1 </dev/null &
    pid=$!
    record_pid moto "$pid" "moto_server.py"
    wait_for "$ENDPOINT/moto-api/" 30 "$pid" || {
        tail -n 20 "$LOGS/moto.log" >&2 || true
        die "moto server did not come up"
    }
}

start_gateway() {
    local bin="$BIN_DIR/stockroom-local" echo_flag=()
    if [[ ! -x "$bin" ]]; then
        log "building stockroom-local (cargo build -p stockroom-local)"
        cargo build -q -p stockroom-local
    fi
    stop_one gateway
    port_busy "$API_PORT" && die "port $API_PORT is in use (set STOCKROOM_API_PORT)"
    port_busy "$INVOKE_PORT" && die "port $INVOKE_PORT is in use (set STOCKROOM_INVOKE_PORT)"
    [[ "${STOCKROOM_ECHO_LOGS:-0}" == 1 ]] && echo_flag=(--echo-logs)
    local fault_flag=()
    if [[ -n "$FAULT_PROXY_PORT" ]]; then
        port_busy "$FAULT_PROXY_PORT" && die "port $FAULT_PROXY_PORT is in use (set STOCKROOM_FAULT_PROXY_PORT)"
        fault_flag=(--fault-proxy-addr "127.0.0.1:$FAULT_PROXY_PORT")
    fi
    for b in $("$PYTHON" -c 'import json,sys; print(" ".join(sorted({f["binary"] for f in json.load(open(sys.argv[1]))["functions"].values()})))' "$STATE/stack.json"); do
        [[ -x "$BIN_DIR/$b" ]] || log "warning: $BIN_DIR/$b is not built; its routes answer 502"
    done
    log "starting stockroom-local: API $API_URL, Invoke API http://127.0.0.1:$INVOKE_PORT (log: .local/logs/stockroom-local.log)"
    nohup "$bin" \
        --stack "$STATE/stack.json" \
        --bin-dir "$BIN_DIR" \
        --log-dir "$LOGS" \
        --api-addr "127.0.0.1:$API_PORT" \
        --invoke-addr "127.0.0.1:$INVOKE_PORT" \
        --env STOCKROOM_ENV=local \
        --env STOCKROOM_WEBHOOK_ALLOW_LOOPBACK=true \
        ${echo_flag[@]+"${echo_flag[@]}"} ${fault_flag[@]+"${fault_flag[@]}"} ${STOCKROOM_LOCAL_ARGS:-} >>"$LOGS/stockroom-local.log" 2>&1 </dev/null &
    local pid=$!
    record_pid gateway "$pid" "stockroom-local"
    if ! wait_for "$API_URL/_local/health" 30 "$pid"; then
        tail -n 20 "$LOGS/stockroom-local.log" >&2 || true
        die "stockroom-local did not come up"
    fi
    if [[ -x "$BIN_DIR/items-api" ]]; then
        wait_for "$API_URL/v1/health" 30 "$pid" ||
            log "warning: GET /v1/health does not answer 2xx yet (see .local/logs/items-api.log)"
    fi
}

seed_demo() {
    local admin="$BIN_DIR/stockroom-admin" out key args=(create-tenant --name demo --tenant-id demo)
    if [[ ! -x "$admin" ]]; then
        log "stockroom-admin not built: no demo tenant seeded"
        return 0
    fi
    # Same moto process and a key on record: the tenant is still there.
    if [[ ! -f "$STATE/demo.json" || "${1:-}" != reused ]]; then
        args+=(--api-key "$DEMO_API_KEY")
        if out="$(set -a && source "$STATE/env" && set +a && "$admin" "${args[@]}" 2>>"$LOGS/stockroom-admin.log")"; then
            printf '%s\n' "$out" | tail -n 1 >"$STATE/demo.json"
        else
            log "warning: stockroom-admin create-tenant failed (see .local/logs/stockroom-admin.log)"
            rm -f "$STATE/demo.json"
            return 0
        fi
    fi
    # What the sample events in events/ name (items, batches, a webhook and
    # its delivery): idempotent, so a reused emulator keeps its data.
    log "seeding the data of the sample events (events/; log: .local/logs/stockroom-admin.log)"
    if ! (set -a && source "$STATE/env" && set +a && "$admin" seed-samples --events "$ROOT/events" --api-key "$DEMO_API_KEY" >>"$LOGS/stockroom-admin.log" 2>&1); then
        log "warning: seeding the sample events' data failed (see .local/logs/stockroom-admin.log); the samples in events/ that need it will not succeed"
    fi
}

print_summary() {
    local key=""
    if [[ -f "$STATE/demo.json" ]]; then
        key="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("api_key",""))' "$STATE/demo.json" 2>/dev/null || true)"
    fi
    echo
    echo "  Stockroom API   $API_URL   (e.g. curl $API_URL/v1/health)"
    echo "  Lambda invoke   source .venv/bin/activate; cargo lambda invoke items-api -A 127.0.0.1 -P $INVOKE_PORT \\"
    echo "                    --data-file events/items-api/get-item.json   (every file in events/ works: its data is seeded)"
    echo "  Live reload     make watch FN=items-api   (in another terminal; this stack sends items-api's invocations to it)"
    echo "  AWS emulator    $ENDPOINT   (source .local/env for scripts/tests)"
    echo "  Logs            .local/logs/"
    if [[ -n "$key" ]]; then
        echo "  Demo API key    $key"
        echo "                  curl -H 'Authorization: Bearer $key' $API_URL/v1/items"
        echo "  Webhooks        local targets may be http://127.0.0.1:<port> (local stack only). Watch deliveries:"
        echo "                  curl -H 'Authorization: Bearer $key' -H 'content-type: application/json' \\"
        echo "                    -d '{\"url\":\"http://127.0.0.1:4000/\",\"events\":[\"batch.completed\",\"item.low_stock\"]}' $API_URL/v1/webhooks"
        echo "                  make webhook-listen SECRET=<the secret from that response>"
        echo "                  (delivery log: GET /v1/webhooks/<id>/deliveries; dispatcher log: .local/logs/webhook-dispatcher.log)"
    fi
    echo
}

cmd_start() {
    local foreground=0
    for a in "$@"; do
        case "$a" in
        --foreground | -f) foreground=1 ;;
        *) die "unknown option $a" ;;
        esac
    done
    mkdir -p "$STATE" "$LOGS"
    command -v curl >/dev/null || die "curl is required"
    require_venv
    ((foreground)) && export STOCKROOM_ECHO_LOGS="${STOCKROOM_ECHO_LOGS:-1}"

    local moto_state=fresh
    pid_of moto >/dev/null && http_ok "$ENDPOINT/moto-api/" && moto_state=reused
    # The policies the emulator enforces (.local/iam.json) come from the template.
    "$PYTHON" devtools/stack.py render --endpoint "$ENDPOINT" --api-url "$API_URL" >/dev/null
    start_moto
    "$PYTHON" devtools/stack.py provision --endpoint "$ENDPOINT" --api-url "$API_URL"
    start_gateway
    seed_demo "$moto_state"
    print_summary

    if ((foreground)); then
        local gw
        gw="$(pid_of gateway)"
        log "running in the foreground; Ctrl-C stops everything"
        tail -n 0 -F "$LOGS/stockroom-local.log" &
        TAIL_PID=$!
        trap 'echo; kill "$TAIL_PID" 2>/dev/null || true; cmd_stop; exit 0' INT TERM
        while kill -0 "$gw" 2>/dev/null; do sleep 1; done
        local status=0
        wait "$gw" 2>/dev/null || status=$?
        kill "$TAIL_PID" 2>/dev/null || true
        log "stockroom-local exited (status $status)"
        cmd_stop
        # Ctrl-C reaches the gateway too: a clean shutdown is not an error.
        ((status == 0 || status == 130)) && exit 0
        exit 1
    fi
}

cmd_stop() {
    stop_one gateway
    stop_one moto
    [[ -f "$PIDS" && ! -s "$PIDS" ]] && rm -f "$PIDS"
    return 0
}

cmd_status() {
    local rc=0 pid
    for name in moto gateway; do
        if pid="$(pid_of "$name")"; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
            rc=3
        fi
    done
    http_ok "$ENDPOINT/moto-api/" && echo "AWS emulator: $ENDPOINT answers" || echo "AWS emulator: $ENDPOINT does not answer"
    if http_ok "$API_URL/v1/health"; then
        echo "API: $API_URL/v1/health answers"
    elif http_ok "$API_URL/_local/health"; then
        echo "API: gateway up at $API_URL, /v1/health does not answer"
    else
        echo "API: $API_URL does not answer"
    fi
    return $rc
}

case "${1:-}" in
deps) cmd_deps ;;
test-deps) cmd_test_deps ;;
start) shift && cmd_start "$@" ;;
stop) cmd_stop ;;
status) cmd_status ;;
render) require_venv && "$PYTHON" devtools/stack.py render --endpoint "$ENDPOINT" --api-url "$API_URL" ;;
*)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
    ;;
esac
