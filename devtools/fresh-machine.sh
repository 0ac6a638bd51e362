#!/usr/bin/env bash
# A new user's workstation, simulated on a Debian machine, to check the README's
# two commands (issue "Two commands on any developer workstation"):
#
#   * python3 is Debian's /usr/bin/python3, which refuses global installs
#     (PEP 668: its EXTERNALLY-MANAGED marker);
#   * PATH holds the system's programs and the Rust toolchain only: no node,
#     npm or npx, no Python tool installed before (moto, cfn-lint, st, sam,
#     cargo-lambda, checkov), no pyenv;
#   * a fresh clone of HEAD, pip without its download cache.
#
# Then: `make doctor` must pass for make run and name Node only for the docs
# test; `make run` must come up with a working demo key; every file in events/
# must succeed through `cargo lambda invoke` (the venv's) against it.
#
#   devtools/fresh-machine.sh [CLONE_DIR]     (default /tmp/stockroom-fresh)
#
# CARGO_TARGET_DIR is passed through (reuse a build cache to save the ~30 min
# a cold build takes on 2 cores; the tools, not the build, are what is checked).
# Uses ports 3100/5100/9100, so a stack on the defaults can stay up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLONE="${1:-/tmp/stockroom-fresh}"
SANDBOX="$CLONE.bin"

log() { printf '\033[1m[fresh]\033[0m %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

ls /usr/lib/python3*/EXTERNALLY-MANAGED >/dev/null 2>&1 ||
    die "/usr/bin/python3 has no PEP 668 marker: this simulation needs Debian 12+ or Ubuntu 23.04+"

log "PATH sandbox in $SANDBOX: system programs without node/npm/npx and Python tools"
rm -rf "$SANDBOX" && mkdir -p "$SANDBOX"
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    for f in "$dir"/*; do
        name="$(basename "$f")"
        case "$name" in
        node | nodejs | npm | npx | corepack | python | python3 | pip | pip3 | pip3.* | \
            cfn-lint | moto_server | st | schemathesis | cargo-lambda | sam | checkov | uv) continue ;;
        esac
        [[ -e "$SANDBOX/$name" ]] || ln -s "$f" "$SANDBOX/$name"
    done
done
ln -s /usr/bin/python3 "$SANDBOX/python3"
RUST_BIN="$(dirname "$(command -v cargo)")"

log "fresh clone of HEAD in $CLONE"
rm -rf "$CLONE"
git clone -q "$ROOT" "$CLONE"

in_sandbox() {
    env -i HOME="$HOME" TERM="${TERM:-dumb}" PATH="$RUST_BIN:$SANDBOX" PIP_NO_CACHE_DIR=1 \
        ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR="$CARGO_TARGET_DIR"} \
        MOTO_PORT=5100 STOCKROOM_API_PORT=3100 STOCKROOM_INVOKE_PORT=9100 \
        bash -c 'cd "$0" && "$@"' "$CLONE" "$@"
}

in_sandbox bash -c '! command -v node && ! command -v npm && ! command -v cfn-lint && ! command -v moto_server' >/dev/null ||
    die "the sandbox still finds node, npm or a Python tool"
in_sandbox python3 -m pip install --dry-run six >/dev/null 2>&1 &&
    die "python3 in the sandbox accepts global installs"
log "python3 refuses global installs (PEP 668); no node, npm or Python tools on PATH"

log "make doctor"
in_sandbox make doctor | tee "$CLONE.doctor.log" || die "make doctor says make run cannot work"
grep -q 'MISSING  node' "$CLONE.doctor.log" || die "make doctor did not name Node as missing"
sed -n '/^make run/,/^$/p' "$CLONE.doctor.log" | grep -q MISSING && die "make doctor reports make run prerequisites missing"

log "make run (log: $CLONE.run.log)"
in_sandbox make run >"$CLONE.run.log" 2>&1 &
RUN=$!
trap 'in_sandbox devtools/local.sh stop >/dev/null 2>&1 || true; kill $RUN 2>/dev/null || true' EXIT
for _ in $(seq 1 3600); do
    grep -q 'Demo API key' "$CLONE.run.log" && break
    kill -0 $RUN 2>/dev/null || { tail -n 30 "$CLONE.run.log" >&2; die "make run exited"; }
    sleep 1
done
grep -q 'Demo API key' "$CLONE.run.log" || die "make run did not come up within an hour"
key="$(sed -n 's/^  Demo API key *//p' "$CLONE.run.log")"
status="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" http://127.0.0.1:3100/v1/items)"
[[ "$status" == 200 ]] || die "GET /v1/items with the demo key answered $status"
log "make run is up; the demo key lists items (200)"

# What each answer must be: 2xx for API events, no batchItemFailures for queue
# events, Allow for the demo key; the four samples that show a refusal on
# purpose get that refusal (tests/api/events.rs checks the same, in detail).
verdict() { # rel-path exit-status output
    "$CLONE/.venv/bin/python" - "$@" <<'PY'
import json, sys
rel, status, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
refusals = {
    "events/authorizer/unknown-key.json": lambda ok, v: not ok and "Unauthorized" in out,
    "events/webhooks-api/refused-target.json": lambda ok, v: ok and v.get("statusCode") == 422,
    "events/batch-worker/poison-message.json": lambda ok, v: ok and len(v.get("batchItemFailures", [])) == 1,
}
try:
    value = json.loads(out[out.index("{"):])
except ValueError:
    value = {}
ok = status == 0
if rel in refusals:
    good = refusals[rel](ok, value)
elif "statusCode" in value:
    good = ok and 200 <= value["statusCode"] < 300
elif "policyDocument" in value:
    good = ok and value["policyDocument"]["Statement"][0]["Effect"] == "Allow"
else:
    good = ok and not value.get("batchItemFailures")
print("ok  " if good else "FAIL", out.replace("\n", " ")[:100])
sys.exit(0 if good else 1)
PY
}

failed=0
for file in "$CLONE"/events/*/*.json; do
    fn="$(basename "$(dirname "$file")")"
    rel="${file#"$CLONE"/}"
    status=0
    out="$(in_sandbox .venv/bin/cargo-lambda lambda invoke "$fn" -A 127.0.0.1 -P 9100 --data-file "$rel" 2>&1)" || status=$?
    printf '  %-50s ' "$rel"
    verdict "$rel" "$status" "$out" || failed=$((failed + 1))
done
((failed == 0)) || die "$failed sample event(s) failed against make run"
log "every sample event answered as documented; stopping the stack"
