#!/usr/bin/env bash
# The project's full check, as CI runs it (`.ci/run` execs this script):
#   system tools -> cargo fmt --check -> clippy -D warnings -> build the binaries -> tests.
# The e2e tests start the real binaries, so they are built before any test runs
# (CARGO_BIN_EXE_* only exists inside a binary's own package).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# System tools the tests use, one "COMMAND PACKAGE" pair per entry (Debian/Ubuntu names).
# Add tools here when a test starts needing them, e.g. "nginx nginx".
TOOLS=(
    "dig dnsutils"
    "curl curl"
    "nginx nginx"
    "haproxy haproxy"
    "python3 python3"
    "chromium chromium"
    "chromedriver chromium-driver"
)

step() { printf '\n==> %s\n' "$*"; }

ensure_tools() {
    local entry cmd pkg missing=()
    for entry in "${TOOLS[@]}"; do
        read -r cmd pkg <<<"$entry"
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            echo "test.sh: not root; please install: apt-get install -y ${missing[*]}" >&2
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: no apt-get; please install: ${missing[*]}" >&2
        return 0
    fi
    step "installing ${missing[*]}"
    # One update for all missing packages, only when something is missing.
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

step "system tools"
ensure_tools

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --bins"
cargo build --workspace --bins

if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests; run them first so nextest's summary line closes the output.
    step "cargo test --doc --workspace"
    cargo test --doc --workspace
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast
else
    step "cargo test --workspace"
    cargo test --workspace --no-fail-fast
fi
