#!/usr/bin/env bash
# Checks that Open WebUI works against Switchyard, end to end, on this machine.
#
# Starts the simulator (switchyard-sim), the router in front of it (switchyard serve) and Open WebUI with
# OLLAMA_BASE_URL pointing at the router, then runs tests/openwebui/check.py: the model list, a streamed chat with
# `auto` (the chunks must name the real model the router chose), a pull through Open WebUI's Ollama proxy, and a chat
# in the real UI through headless Chromium (with screenshots in target/openwebui/). Everything started here is stopped
# on exit.
#
# Setup, cached under target/openwebui/: a Python virtual environment (venv/) with Open WebUI $OPENWEBUI_VERSION,
# installed without its heavy optional dependencies (--no-deps plus the pinned tests/openwebui/requirements.txt), and
# playwright (its driver only: the browser is a Chromium already on the machine). The first run installs about
# 850 MB there (about a minute); later runs reuse it, and the whole check takes 15 to 30 seconds.
#
# Environment (all optional):
#   SY_CHROMIUM=PATH          Chromium (or a wrapper script) for the browser check; else `chromium` on PATH, else
#                             Debian's chromium package is installed when running as root or with passwordless sudo.
#   SY_INSTALL_CHROMIUM=0     never install Chromium.
#   SY_REQUIRE_BROWSER=1      a missing Chromium is a failure (by default the browser check is skipped, said loudly).
#   SY_PYTHON=python3.x       the Python for the environment (Open WebUI needs 3.11 or 3.12).
#   SY_SIM_BIN, SY_ROUTER_BIN the binaries to run; else $CARGO_TARGET_DIR (or target)/debug/, built first unless
#   SY_SKIP_BUILD=1           is set.
#   SY_PULL_MODEL=NAME        the model deleted and pulled again (default llama3.1:8b, in the simulator's registry).
#
# Exit status: 0 when every check passed (the browser check may have been skipped, see above), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENWEBUI_VERSION=0.12.4
OUT=$PWD/target/openwebui
VENV=$OUT/venv
LOGS=$OUT/logs
REQUIREMENTS=tests/openwebui/requirements.txt
# Deadlines for the servers to come up (Open WebUI's first start creates its database and is the slowest).
SERVER_START_TIMEOUT_S=60
WEBUI_START_TIMEOUT_S=120
STOP_TIMEOUT_S=10

START_NS=$(date +%s%N)
elapsed() { printf '%6.1fs' "$(( $(date +%s%N) - START_NS ))e-9"; }
step() { printf '\n==> [%s] %s\n' "$(elapsed)" "$*"; }
die() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null || die "curl is needed"
mkdir -p "$LOGS"

# ---------------------------------------------------------------------------------------------------------------------
step "Python environment ($VENV)"

# Open WebUI $OPENWEBUI_VERSION supports Python 3.11 and 3.12.
python_ok() { "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' >/dev/null 2>&1; }
if [ -n "${SY_PYTHON:-}" ]; then
    python_ok "$SY_PYTHON" || die "SY_PYTHON=$SY_PYTHON is not Python 3.11 or 3.12"
    BASE_PYTHON=$SY_PYTHON
else
    BASE_PYTHON=
    for candidate in python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then BASE_PYTHON=$candidate; break; fi
    done
    [ -n "$BASE_PYTHON" ] || die "no Python 3.11 or 3.12 found (Open WebUI $OPENWEBUI_VERSION needs one); set SY_PYTHON"
fi
if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then rm -rf "$VENV"; fi
[ -x "$VENV/bin/python" ] || "$BASE_PYTHON" -m venv "$VENV"
PY=$VENV/bin/python

# The install is redone only when the pinned versions change.
STAMP="open-webui==$OPENWEBUI_VERSION $(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$STAMP" ]; then
    echo "installing Open WebUI $OPENWEBUI_VERSION and $REQUIREMENTS (log: $LOGS/pip.log)"
    pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@" >>"$LOGS/pip.log" 2>&1; }
    : >"$LOGS/pip.log"
    install_all() { pip_install -r "$REQUIREMENTS" && pip_install --no-deps "open-webui==$OPENWEBUI_VERSION"; }
    # One more try after a failure (a download cut short by the network), unless the disk is nearly full.
    status=0
    install_all || status=$?
    if [ "$status" != 0 ] && [ "$(df -Pk "$VENV" | awk 'NR == 2 {print $4}')" -gt 2097152 ]; then
        echo "pip install failed (exit status $status); trying once more"
        status=0
        install_all || status=$?
    fi
    if [ "$status" != 0 ]; then
        tail -n 30 "$LOGS/pip.log" >&2
        df -h "$VENV" "${TMPDIR:-/tmp}" >&2 || true
        die "pip install failed (exit status $status; log: $LOGS/pip.log; disk space shown above)"
    fi
    echo "$STAMP" >"$VENV/.installed"
else
    echo "up to date (open-webui $OPENWEBUI_VERSION)"
fi

# ---------------------------------------------------------------------------------------------------------------------
step "Chromium"

find_chromium() {
    if [ -n "${SY_CHROMIUM:-}" ]; then
        [ -x "$SY_CHROMIUM" ] || die "SY_CHROMIUM=$SY_CHROMIUM is not an executable"
        echo "$SY_CHROMIUM"
    else
        command -v chromium || true
    fi
}
CHROMIUM=$(find_chromium)
# As root, or through passwordless sudo (never prompting).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
can_be_root() { [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }
if [ -z "$CHROMIUM" ] && [ "${SY_INSTALL_CHROMIUM:-1}" != 0 ] && command -v apt-get >/dev/null && can_be_root; then
    echo "installing Debian's chromium package (log: $LOGS/apt.log)"
    if ! { as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$LOGS/apt.log" 2>&1; then
        echo "apt-get install chromium failed (log: $LOGS/apt.log)"
    fi
    CHROMIUM=$(find_chromium)
fi
if [ -n "$CHROMIUM" ]; then
    echo "using $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
elif [ "${SY_REQUIRE_BROWSER:-0}" = 1 ]; then
    echo "no Chromium found: the browser check will FAIL (SY_REQUIRE_BROWSER=1)"
else
    echo "no Chromium found: THE BROWSER CHECK WILL BE SKIPPED (install Debian's chromium or set SY_CHROMIUM)"
fi

# ---------------------------------------------------------------------------------------------------------------------
step "Switchyard binaries"

TARGET_DIR=${CARGO_TARGET_DIR:-target}
SIM_BIN=${SY_SIM_BIN:-$TARGET_DIR/debug/switchyard-sim}
ROUTER_BIN=${SY_ROUTER_BIN:-$TARGET_DIR/debug/switchyard}
if [ -z "${SY_SIM_BIN:-}${SY_ROUTER_BIN:-}" ] && [ "${SY_SKIP_BUILD:-0}" != 1 ]; then
    cargo build -q --locked --bins -p switchyard -p switchyard-sim
fi
for bin in "$SIM_BIN" "$ROUTER_BIN"; do [ -x "$bin" ] || die "$bin does not exist (cargo build --bins)"; done
echo "$SIM_BIN, $ROUTER_BIN"

# ---------------------------------------------------------------------------------------------------------------------
step "Starting the simulator, the router and Open WebUI (logs: $LOGS)"

RUN_DIR=$(mktemp -d -t switchyard-openwebui.XXXXXX)
PIDS=()

# Whether process $1 still runs (a child that exited stays a zombie until reaped: that counts as gone).
running() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Stops every process started here (SIGTERM, then SIGKILL past the deadline) and removes the run directory.
cleanup() {
    local pid deadline
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$(( $(date +%s) + STOP_TIMEOUT_S ))
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        while running "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
        running "$pid" && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Fails with the tail of log $2 if process $1 is gone or deadline $3 (epoch seconds) has passed.
check_alive() {
    running "$1" || { tail -n 20 "$2" >&2; die "$(basename "$2" .log) exited (log: $2)"; }
    [ "$(date +%s)" -lt "$3" ] || { tail -n 20 "$2" >&2; die "$(basename "$2" .log) did not start in time (log: $2)"; }
}

# Starts a server that prints `<announcement><url>` as its first stdout line (on a free port: --listen ...:0), waits
# for that line and sets URL.
start_announcing() {
    local name=$1 announcement=$2 deadline pid
    shift 2
    : >"$RUN_DIR/$name.out"
    "$@" >"$RUN_DIR/$name.out" 2>"$LOGS/$name.log" &
    pid=$!
    PIDS+=("$pid")
    deadline=$(( $(date +%s) + SERVER_START_TIMEOUT_S ))
    until [ "$(wc -l <"$RUN_DIR/$name.out")" -ge 1 ]; do
        check_alive "$pid" "$LOGS/$name.log" "$deadline"
        sleep 0.1
    done
    URL=$(head -n 1 "$RUN_DIR/$name.out")
    [[ $URL == "$announcement"* ]] || die "$name printed '$URL' instead of its address"
    URL=${URL#"$announcement"}
}

# Polls $1 until it answers 2xx; the last started process must stay alive meanwhile; gives up after $2 seconds.
wait_http() {
    local url=$1 deadline=$(( $(date +%s) + $2 )) log=$3
    until curl -sf -o /dev/null --max-time 2 "$url"; do
        check_alive "${PIDS[-1]}" "$log" "$deadline"
        sleep 0.2
    done
}

# The simulator: the built-in fleet on one simulated 24 GiB GPU; time scale 0 makes every delay instant.
start_announcing sim "switchyard-sim listening on " "$SIM_BIN" --listen 127.0.0.1:0 --time-scale 0
SIM_URL=$URL
wait_http "$SIM_URL/api/version" "$SERVER_START_TIMEOUT_S" "$LOGS/sim.log"
echo "[$(elapsed)] simulator  $SIM_URL"

# The router, with the simulator as its Ollama and its store in the run directory. It refuses unknown SWITCHYARD_*
# variables, so none from this environment is passed on.
unset_switchyard=()
for var in $(compgen -e); do [[ $var == SWITCHYARD_* ]] && unset_switchyard+=(-u "$var"); done
start_announcing router "switchyard listening on " \
    env ${unset_switchyard[@]+"${unset_switchyard[@]}"} \
    SWITCHYARD_VRAM_PROBE=sim SWITCHYARD_DATABASE_URL="sqlite://$RUN_DIR/switchyard.db" RUST_LOG=warn \
    "$ROUTER_BIN" serve --listen 127.0.0.1:0 --ollama "$SIM_URL"
ROUTER_URL=$URL
wait_http "$ROUTER_URL/ready" "$SERVER_START_TIMEOUT_S" "$LOGS/router.log"
echo "[$(elapsed)] router     $ROUTER_URL"

# Open WebUI: no sign-in (a single admin user), Ollama only (the router), offline, no background generation tasks
# (titles, tags, follow-ups: they would be extra routed requests), `auto` as the default model. Its data (SQLite,
# uploads, cache) goes to the run directory. It cannot announce a port, so one is picked free just before.
WEBUI_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
WEBUI_URL=http://127.0.0.1:$WEBUI_PORT
mkdir -p "$RUN_DIR/webui"
(
    cd "$RUN_DIR/webui"
    export DATA_DIR=$RUN_DIR/webui OLLAMA_BASE_URL=$ROUTER_URL ENABLE_OLLAMA_API=True ENABLE_OPENAI_API=False
    WEBUI_SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')
    export WEBUI_AUTH=False WEBUI_SECRET_KEY
    export USE_SLIM_DOCKER=true OFFLINE_MODE=True HF_HUB_OFFLINE=1 RAG_EMBEDDING_MODEL_AUTO_UPDATE=False
    export ENABLE_VERSION_UPDATE_CHECK=False SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true ANONYMIZED_TELEMETRY=false
    export ENABLE_TITLE_GENERATION=False ENABLE_TAGS_GENERATION=False ENABLE_FOLLOW_UP_GENERATION=False
    export ENABLE_AUTOCOMPLETE_GENERATION=False ENABLE_SEARCH_QUERY_GENERATION=False
    export ENABLE_RETRIEVAL_QUERY_GENERATION=False DEFAULT_MODELS=auto
    exec "$VENV/bin/open-webui" serve --host 127.0.0.1 --port "$WEBUI_PORT"
) >"$LOGS/webui.log" 2>&1 &
PIDS+=("$!")
wait_http "$WEBUI_URL/health" "$WEBUI_START_TIMEOUT_S" "$LOGS/webui.log"
echo "[$(elapsed)] Open WebUI $WEBUI_URL (OLLAMA_BASE_URL=$ROUTER_URL)"

# ---------------------------------------------------------------------------------------------------------------------
step "Checks"

check_args=(--router "$ROUTER_URL" --webui "$WEBUI_URL" --out "$OUT" --pull-model "${SY_PULL_MODEL:-llama3.1:8b}")
if [ -n "$CHROMIUM" ]; then check_args+=(--chromium "$CHROMIUM"); fi
if [ "${SY_REQUIRE_BROWSER:-0}" = 1 ]; then check_args+=(--require-browser); fi
status=0
"$PY" tests/openwebui/check.py "${check_args[@]}" || status=$?

if [ "$status" = 0 ] && [ -n "$CHROMIUM" ]; then
    step "Open WebUI check passed (API and browser)"
elif [ "$status" = 0 ]; then
    step "Open WebUI check passed for the API only: THE BROWSER CHECK WAS SKIPPED (no Chromium)"
else
    step "Open WebUI check FAILED (logs: $LOGS)"
fi
exit "$status"
