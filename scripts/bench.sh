#!/usr/bin/env bash
# Builds Switchyard in release mode and runs every benchmark: the criterion micro benchmarks (routing decision,
# translation), the load tool (added latency, throughput, memory; then side by side with nginx when it is installed),
# the VRAM trace replay (one box, then a fleet), the response cache benchmark and the task cascade benchmark. Results go to
# target/bench-results/ (override with BENCH_OUT); criterion's own reports stay in target/criterion/.
#
#   scripts/bench.sh            full run (about 20 minutes on 2 cores, plus the build)
#   scripts/bench.sh --quick    smoke run of everything (about 2 minutes plus the build)
set -euo pipefail

cd "$(dirname "$0")/.."
quick=0
if [[ "${1:-}" == "--quick" ]]; then
    quick=1
fi
out="${BENCH_OUT:-target/bench-results}"
mkdir -p "$out"

echo "== machine"
{
    echo "cores: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(grep MemTotal /proc/meminfo | awk '{printf "%.1f GiB", $2 / 1048576}')"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rustc: $(rustc --version)"
} | tee "$out/machine.txt"

echo "== build (release)"
cargo build --release -p switchyard -p switchyard-sim -p switchyard-bench

if [[ $quick == 1 ]]; then
    criterion_args=(--warm-up-time 1 --measurement-time 1)
    export ROUTING_TAIL_ITERATIONS=20000
    load_args=(--quick)
    replay_args=(--quick)
    cache_args=(--quick)
else
    criterion_args=(--warm-up-time 1 --measurement-time 3)
    load_args=()
    replay_args=()
    cache_args=()
fi

echo "== micro benchmarks (criterion)"
cargo bench -p switchyard --bench routing -- "${criterion_args[@]}" | tee "$out/routing.txt"
cargo bench -p switchyard --bench translate -- "${criterion_args[@]}" | tee "$out/translate.txt"

echo "== load tool: added latency, throughput, memory"
target/release/switchyard-load "${load_args[@]}" --out "$out/load.json" | tee "$out/load.md"

echo "== load tool: side by side with nginx as a plain reverse proxy"
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    target/release/switchyard-load --versus nginx "${load_args[@]}" --out "$out/versus.json" | tee "$out/versus.md"
else
    echo "skipped: nginx is not installed (Debian: apt-get install nginx-light)"
fi

echo "== VRAM trace replay"
target/release/switchyard-replay "${replay_args[@]}" --out "$out/replay.json" | tee "$out/replay.md"

echo "== fleet trace replay: a Switchyard front against round robin and least connections"
if [[ $quick == 1 ]]; then
    target/release/switchyard-replay --fleet 2 --requests 80 --out "$out/fleet.json" | tee "$out/fleet.md"
else
    target/release/switchyard-replay --fleet 2,4 --out "$out/fleet.json" | tee "$out/fleet.md"
fi

echo "== response cache: exact hits, semantic search, labelled pairs, replayed trace"
target/release/switchyard-cache-bench "${cache_args[@]}" --out "$out/cache.json" | tee "$out/cache.md"

echo "== task cascades: held-out items, each cascade against each model alone"
target/release/switchyard-cascade-bench --json "$out/cascade.json" | tee "$out/cascade.md"

echo
echo "Results:"
echo "  $out/machine.txt                machine description"
echo "  $out/routing.txt, translate.txt criterion output (HTML reports under target/criterion/)"
echo "  $out/load.md, load.json         load tool report and raw figures"
echo "  $out/versus.md, versus.json     side by side with nginx (when installed)"
echo "  $out/replay.md, replay.json     trace replay report and raw figures"
echo "  $out/cache.md, cache.json       response cache report and raw figures"
echo "  $out/cascade.md, cascade.json   task cascade report and raw figures"
