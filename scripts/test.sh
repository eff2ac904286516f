#!/usr/bin/env bash
# The one test command. On a fresh machine it sets up what is missing (Debian's postgresql, a Python virtual
# environment with the official ollama and openai client libraries), starts a throwaway Postgres server, and runs
# every test: formatting and lints, the Rust workspace on SQLite and Postgres, the classifier's training pipeline on a
# small pinned subset of its public corpus, the Python client tests against the real binaries, the end-to-end tests
# against a real inference engine (llama.cpp's llama-server, built from source and cached under target/llama), and
# Open WebUI driven through its API and, in headless Chromium, its UI (scripts/openwebui-check.sh), and the deploy
# file validators. nginx is installed for the load tool's side-by-side comparison, whose harness is tested too.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step header says how much disk is left: a full disk shows as odd failures (an empty log, a failed install).
step() { printf '\n==> %s (disk free: %s)\n' "$*" "$(df -h --output=avail . 2>/dev/null | tail -n 1 | tr -d ' ')"; }

# A test run builds from scratch once: incremental compilation would only add gigabytes of cache to target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Nor do its ~60 test binaries need debug information (about 70 MB each, mostly the standard library's): panic messages
# still say where they happened; backtraces name functions only. (On a machine that also builds with plain cargo, these
# settings keep a second set of artifacts in target/: set both variables to the profile's values to share one.)
export CARGO_PROFILE_DEV_STRIP="${CARGO_PROFILE_DEV_STRIP:-debuginfo}"

step "Postgres (throwaway server)"
eval "$(scripts/postgres-throwaway.sh start)"
trap 'scripts/postgres-throwaway.sh stop "$SY_PG_DIR"' EXIT
export SY_TEST_POSTGRES_URL SY_REQUIRE_POSTGRES=1
echo "using $SY_TEST_POSTGRES_URL"

step "Python client libraries (.venv)"
if ! python3 -m venv --help >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv; fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt

step "Chromium (Debian's package, for the browser tests)"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi
fi
chromium --version
export SY_REQUIRE_BROWSER=1

step "nginx (Debian's nginx-light, the plain reverse proxy the load tool compares with)"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; fi
fi
export SY_REQUIRE_NGINX=1

step "Build"
cargo build --workspace --bins --locked

step "Lints (rustfmt, clippy: no unwrap/expect/panic outside tests, no warnings; the router without the demo too)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p switchyard --no-default-features --locked -- -D warnings

step "Real engine: llama.cpp's llama-server and tiny GGUF models (built once, cached in target/llama)"
if scripts/llama-server.sh; then
    # Built: the real-engine tests must run, and fail if they cannot find it.
    export SY_REQUIRE_REAL_ENGINE=1
else
    echo "REAL-ENGINE TESTS WILL BE SKIPPED: scripts/llama-server.sh failed (output above); each such test says so"
fi

step "Rust tests (SQLite and Postgres)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "Classifier training pipeline (a small pinned subset of the public corpus, end to end)"
scripts/train-classifier.sh --small
grep -q '^| \*\*all\*\* |' target/classifier/small/report.md

step "Python client tests (official ollama and openai libraries)"
SY_ROUTER_BIN="$PWD/target/debug/switchyard" SY_SIM_BIN="$PWD/target/debug/switchyard-sim" \
    .venv/bin/python -m pytest -q -rs tests/python

step "Open WebUI against the router (its API and its UI in headless Chromium)"
SY_SKIP_BUILD=1 SY_SIM_BIN="$PWD/target/debug/switchyard-sim" \
    SY_ROUTER_BIN="$PWD/target/debug/switchyard" scripts/openwebui-check.sh

if [ -x scripts/validate-deploy.sh ]; then
    step "Deploy files"
    scripts/validate-deploy.sh
fi

step "All tests passed"
