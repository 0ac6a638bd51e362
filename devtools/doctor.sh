#!/usr/bin/env bash
# make doctor: what each make target needs, what this machine has, and the one
# command that installs each missing piece (Debian/Ubuntu and macOS/Homebrew).
# Exits non-zero when something `make run` needs is missing; the other
# targets' gaps are reported, not fatal. Checks only: it installs nothing.
#
# Portable to macOS's bash 3.2 and BSD tools.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MIN_PYTHON=3.11
MIN_RUST="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)"
BOOTSTRAP_PYTHON="${STOCKROOM_BOOTSTRAP_PYTHON:-python3}"

missing_run=0
missing_other=0

ok() { printf '  ok       %-22s %s\n' "$1" "$2"; }
# missing <target-kind> <what> <why> <debian command> <homebrew command>
missing() {
    printf '  MISSING  %-22s %s\n' "$2" "$3"
    printf '           Debian/Ubuntu: %s\n' "$4"
    printf '           macOS (Homebrew): %s\n' "$5"
    if [[ "$1" == run ]]; then missing_run=$((missing_run + 1)); else missing_other=$((missing_other + 1)); fi
}

version_at_least() { # have want (dotted)
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -t. -k1,1n -k2,2n -k3,3n | head -n 1)" == "$2" ]]
}

check_tool() { # kind name why debian brew
    if command -v "$2" >/dev/null 2>&1; then
        ok "$2" "$(command -v "$2")"
    else
        missing "$@"
    fi
}

echo "make run (and everything else):"
if command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1; then
    have="$(rustc --version | awk '{print $2}')"
    if version_at_least "${have%%-*}" "$MIN_RUST"; then
        ok "Rust toolchain" "rustc $have (>= $MIN_RUST)"
    else
        missing run "Rust >= $MIN_RUST" "rustc $have is too old" "rustup update stable" "rustup update stable"
    fi
else
    missing run "Rust toolchain" "cargo and rustc build every function" \
        "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" \
        "brew install rustup && rustup-init"
fi
check_tool run cc "C compiler for crates that build C code" "sudo apt-get install build-essential" "xcode-select --install"
check_tool run make "" "sudo apt-get install make" "xcode-select --install"
check_tool run curl "" "sudo apt-get install curl" "brew install curl"
if command -v "$BOOTSTRAP_PYTHON" >/dev/null 2>&1; then
    have="$("$BOOTSTRAP_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo 0)"
    if ! version_at_least "$have" "$MIN_PYTHON"; then
        missing run "Python >= $MIN_PYTHON" "$BOOTSTRAP_PYTHON is $have" \
            "sudo apt-get install python3 python3-venv (or set STOCKROOM_BOOTSTRAP_PYTHON)" "brew install python@3.12"
    elif ! "$BOOTSTRAP_PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing run "python3 venv module" "$BOOTSTRAP_PYTHON $have cannot create .venv/" \
            "sudo apt-get install python3-venv" "brew reinstall python@3.12"
    else
        ok "Python $have" "$(command -v "$BOOTSTRAP_PYTHON") (with venv; tools go into .venv/)"
    fi
else
    missing run "python3 >= $MIN_PYTHON" "the local stack's AWS emulator (moto) runs on it" \
        "sudo apt-get install python3 python3-venv" "brew install python@3.12"
fi
if [[ -x .venv/bin/python ]] && cmp -s requirements-dev.txt .venv/.requirements-dev.txt; then
    ok ".venv/" "dev tools installed (requirements-dev.txt)"
else
    printf '  later    %-22s %s\n' ".venv/" "not there or out of date: make run / make test create it (make deps)"
fi

echo
echo "make test (adds, for the docs page test only):"
# Node.js: the docs page test's browser script and the OpenAPI linters;
# Redocly CLI needs 20.19 or later (Debian 12's own nodejs is 18).
MIN_NODE=20.19
if command -v node >/dev/null 2>&1; then
    have="$(node --version 2>/dev/null | sed 's/^v//')"
    if [[ "$(printf '%s\n%s\n' "$MIN_NODE" "$have" | sort -V | head -n1)" == "$MIN_NODE" ]]; then
        ok "Node.js $have" "$(command -v node)"
    else
        missing test "Node.js >= $MIN_NODE" "node $have is too old for Redocly (the OpenAPI lint)" \
            "install Node.js 20 LTS or newer from https://nodejs.org (Debian 12's nodejs is 18)" "brew install node"
    fi
else
    missing test node "Node.js runs the docs page test and the OpenAPI linters" "sudo apt-get install nodejs npm" "brew install node"
fi
check_tool test npm "installs playwright-core and the OpenAPI linters (make test-deps)" "sudo apt-get install npm" "brew install node"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$chromium" ]]; then
    ok chromium "$chromium"
else
    missing test chromium "the docs page test's headless browser (or set CHROMIUM=<path>)" \
        "sudo apt-get install chromium" "brew install --cask chromium, then export CHROMIUM=/Applications/Chromium.app/Contents/MacOS/Chromium"
fi

echo
echo "make bench (adds):"
# The benchmarks read peak memory (VmHWM) from /proc, which macOS lacks.
if [[ -r /proc/self/status ]]; then
    ok "/proc" "peak-memory readings (Linux)"
else
    missing bench "Linux /proc" "the memory figures of make bench read /proc/<pid>/status" \
        "(Linux has it)" "not available on macOS: run make bench on a Linux machine or VM"
fi

echo
echo "make deploy (adds):"
if command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
        ok "aarch64 target" "installed"
    else
        printf '  later    %-22s %s\n' "aarch64 target" "make sam-build adds it (rustup target add aarch64-unknown-linux-gnu)"
    fi
else
    missing deploy rustup "sam build cross-compiles for arm64 with rustup's aarch64 target" \
        "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" "brew install rustup && rustup-init"
fi
if [[ -x .venv-sam/bin/sam ]] && cmp -s devtools/requirements/sam.txt .venv-sam/.requirements.txt; then
    ok ".venv-sam/" "SAM CLI, cargo-lambda, zig installed"
else
    printf '  later    %-22s %s\n' ".venv-sam/" "make sam-build creates it (SAM CLI, cargo-lambda, zig; devtools/requirements/sam.txt)"
fi
if [[ -n "${AWS_ACCESS_KEY_ID:-}" || -n "${AWS_PROFILE:-}" || -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" || -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ]]; then
    ok "AWS credentials" "found (environment or ~/.aws)"
else
    missing deploy "AWS credentials" "sam deploy needs an account's credentials" \
        "sudo apt-get install awscli && aws configure" \
        "brew install awscli && aws configure"
fi

echo
if ((missing_run > 0)); then
    echo "doctor: $missing_run prerequisite(s) of make run missing (above)."
    exit 1
fi
if ((missing_other > 0)); then
    echo "doctor: make run has what it needs; $missing_other prerequisite(s) of other targets missing (above)."
else
    echo "doctor: everything is there."
fi
exit 0
