#!/usr/bin/env python3
"""The criterion docs/classifier.md chooses training data and settings by, over several seeds.

For one seed, the criterion is the mean of two figures: the test split's accuracy averaged over the categories
(from `switchyard-train --report`), and the cross-validation by source averaged over the categories, where each
category's figure is the mean over its sources with at least 20 prompts (from `switchyard-train --cross-validate
5`). When variants are compared, only the (source, category) pairs that every run being reported has count, so
that a variant with an extra source is not scored on it. A variant's criterion is the mean over its seeds. The
figures are read as the trainer prints them (to 0.1%), so differences under about 0.05 mean nothing.

    # train and cross-validate one variant with each seed (extra switchyard-train flags after --)
    scripts/classifier/criterion.py run --corpus target/classifier/corpus.jsonl \\
        --out target/classifier/criterion/buckets-18 -- --bits 18
    scripts/classifier/criterion.py run --corpus target/classifier/corpus.jsonl \\
        --out target/classifier/criterion/buckets-19
    # compare them
    scripts/classifier/criterion.py report target/classifier/criterion/buckets-18 target/classifier/criterion/buckets-19
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

CATEGORIES = ["coding", "math", "reasoning", "factual", "creative", "extraction", "general"]
DEFAULT_SEEDS = "7,1,2,3"
# A source counts in a category's cross-validated mean with at least this many prompts of it.
MIN_PROMPTS = 20


def held_out_figures(report: str) -> dict[str, float]:
    """Per-category held-out accuracy (percent) from a `--report` file, with "all" and "mean of the categories"."""
    if "### Held-out accuracy" not in report:
        raise ValueError("no \"### Held-out accuracy\" section")
    section = report.split("### Held-out accuracy", 1)[1].split("###", 1)[0]
    figures: dict[str, float] = {}
    for line in section.splitlines():
        cells = [c.strip().strip("*") for c in line.split("|")]
        if len(cells) > 4 and cells[1] and cells[1] not in ("category", "---"):
            match = re.match(r"([\d.]+)%", cells[3])
            if match:
                figures[cells[1]] = float(match.group(1))
    return figures


def cv_figures(text: str) -> dict[tuple[str, str], tuple[int, float]]:
    """(source, category) -> (prompts, accuracy in percent) from a `--cross-validate` output."""
    rows: dict[tuple[str, str], tuple[int, float]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 6 and cells[3].isdigit() and cells[2] in CATEGORIES:
            rows[(cells[1], cells[2])] = (int(cells[3]), float(cells[4].rstrip("%")))
    return rows


def cv_mean(rows: dict[tuple[str, str], tuple[int, float]], shared: set[tuple[str, str]]) -> dict[str, float]:
    """Per category, the mean accuracy over the shared sources of it; "mean" is the mean over the categories."""
    means: dict[str, float] = {}
    for category in CATEGORIES:
        values = [rows[key][1] for key in sorted(shared) if key[1] == category and key in rows]
        if values:
            means[category] = sum(values) / len(values)
    means["mean"] = sum(means[c] for c in CATEGORIES if c in means) / sum(c in means for c in CATEGORIES)
    return means


def seeds_of(run: Path) -> list[str]:
    """The seeds a run directory has reports of (report-SEED.md, SEED a number), in numeric order."""
    found = (re.fullmatch(r"report-(\d+)\.md", p.name) for p in run.glob("report-*.md"))
    return sorted((m.group(1) for m in found if m), key=int)


def read_run(run: Path, seed: str) -> tuple[dict[str, float], dict[tuple[str, str], tuple[int, float]]]:
    report_path, cv_path = run / f"report-{seed}.md", run / f"cv-{seed}.md"
    if not cv_path.exists():
        raise SystemExit(f"{cv_path} is missing (an interrupted run?): run `criterion.py run` for {run} again")
    try:
        tests = held_out_figures(report_path.read_text())
    except ValueError as e:
        raise SystemExit(f"{report_path}: {e}") from e
    return tests, cv_figures(cv_path.read_text())


def report(runs: list[Path], out=sys.stdout, seeds: list[str] | None = None) -> dict[str, float]:
    """Prints each run's figures per seed, their averages and the criterion; returns the criterion of each run.

    `seeds` limits every run to those seeds (default: every seed each run has)."""
    loaded = {}
    run_seeds = {}
    shared: set[tuple[str, str]] | None = None
    for run in runs:
        run_seeds[run] = seeds if seeds is not None else seeds_of(run)
        if not run_seeds[run]:
            raise SystemExit(f"{run}: no report-SEED.md files (run `criterion.py run` first)")
        for seed in run_seeds[run]:
            tests, rows = read_run(run, seed)
            loaded[(run, seed)] = (tests, rows)
            keys = {key for key, (n, _) in rows.items() if n >= MIN_PROMPTS}
            shared = keys if shared is None else shared & keys
    if not shared:
        raise SystemExit(f"no (source, category) with at least {MIN_PROMPTS} prompts is shared by every run and seed")
    if len({tuple(s) for s in run_seeds.values()}) > 1:
        print("warning: the runs have different seeds; their criteria do not compare", file=sys.stderr)
    missing = [c for c in CATEGORIES if not any(key[1] == c for key in shared)]
    if missing:
        print(f"warning: no shared source of {', '.join(missing)}: left out of the cross-validation mean",
              file=sys.stderr)
    criteria = {}
    for run in runs:
        print(f"{run}:", file=out)
        per_seed = []
        for seed in run_seeds[run]:
            tests, rows = loaded[(run, seed)]
            cv = cv_mean(rows, shared)
            value = (tests["mean of the categories"] + cv["mean"]) / 2
            per_seed.append((tests, cv, value))
            per_test = " ".join(f"{c[:4]} {tests[c]:.1f}" for c in CATEGORIES if c in tests)
            per_cv = " ".join(f"{c[:4]} {cv[c]:.1f}" for c in CATEGORIES if c in cv)
            print(
                f"  seed {seed}: test all {tests['all']:.1f}, mean {tests['mean of the categories']:.1f} ({per_test});"
                f" cross-validation mean {cv['mean']:.1f} ({per_cv}); criterion {value:.2f}",
                file=out,
            )
        n = len(per_seed)

        def average(figures: int, key: str) -> str:
            values = [seed[figures][key] for seed in per_seed if key in seed[figures]]
            return f"{sum(values) / len(values):.1f}" if len(values) == n else "-"

        test_avg = " ".join(f"{c[:4]} {average(0, c)}" for c in CATEGORIES)
        cv_avg = " ".join(f"{c[:4]} {average(1, c)}" for c in CATEGORIES)
        criteria[str(run)] = sum(seed[2] for seed in per_seed) / n
        print(
            f"  average of {n} seeds: test all {average(0, 'all')}, mean {average(0, 'mean of the categories')}"
            f" ({test_avg}); cross-validation mean {average(1, 'mean')} ({cv_avg})",
            file=out,
        )
        print(f"  criterion over {n} seeds: {criteria[str(run)]:.2f}", file=out)
    return criteria


def run(corpus: Path, out: Path, seeds: list[str], train: str, extra: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        common = [train, "--corpus", str(corpus), "--seed", seed, *extra]
        print(f"seed {seed}: training and evaluating ...", file=sys.stderr, flush=True)
        subprocess.run(
            [*common, "--out", str(out / f"model-{seed}.bin"), "--report", str(out / f"report-{seed}.md")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"seed {seed}: cross-validating ...", file=sys.stderr, flush=True)
        with open(out / f"cv-{seed}.md.tmp", "w") as cv:
            subprocess.run([*common, "--cross-validate", "5"], check=True, stdout=cv)
        os.replace(out / f"cv-{seed}.md.tmp", out / f"cv-{seed}.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and cross-validate one variant with each seed")
    r.add_argument("--corpus", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True, help="directory for the reports of this variant")
    r.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated (default {DEFAULT_SEEDS})")
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    r.add_argument("--train", default=f"{target}/release/switchyard-train", help="the switchyard-train binary")
    r.add_argument("extra", nargs="*", help="switchyard-train flags of the variant, after --")
    p = sub.add_parser("report", help="print the figures and criterion of runs, on the sources they all share")
    p.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        if not Path(args.train).exists():
            raise SystemExit(f"{args.train} not found: cargo build --release -p switchyard-classifier")
        seeds = args.seeds.split(",")
        run(args.corpus, args.out, seeds, args.train, args.extra)
        report([args.out], seeds=seeds)
    else:
        report(args.runs)


if __name__ == "__main__":
    main()
