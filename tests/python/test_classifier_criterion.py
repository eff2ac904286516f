"""The classifier's selection criterion (scripts/classifier/criterion.py): parsing and arithmetic, no binaries."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "classifier"))

import criterion  # noqa: E402

REPORT = """Settings: ...

### Held-out accuracy (test sources, never seen in training)

| category | prompts | learned | 95% interval | rules | 95% interval |
|---|---:|---:|---|---:|---|
| coding | 10 | 90.0% | 60-98% | 50.0% | 20-80% |
| math | 30 | 70.0% | 52-83% | 50.0% | 33-67% |
| **all** | 40 | **75.0%** | 60-86% | 50.0% | 35-65% |
| **mean of the categories** | | **80.0%** | | 50.0% | |

### Reliability of the learned model's confidence (test sources)

| confidence | prompts | mean confidence | accuracy |
|---|---:|---:|---:|
| coding | 5 | 12.3% | 0.5 |
"""


def cv_text(rows: list[tuple[str, str, int, float]]) -> str:
    lines = ["| source | category | prompts | accuracy |", "|---|---|---:|---:|"]
    lines += [f"| {s} | {c} | {n} | {a:.1f}% |" for s, c, n, a in rows]
    lines += ["", "| category | prompts | pooled | mean over sources (sources) |", "|---|---:|---:|---:|",
              "| coding | 500 | 80.0% | 80.0% (2) |"]
    return "\n".join(lines) + "\n"


def write_run(path: Path, seeds: dict[str, list[tuple[str, str, int, float]]]) -> Path:
    path.mkdir()
    for seed, rows in seeds.items():
        (path / f"report-{seed}.md").write_text(REPORT)
        (path / f"cv-{seed}.md").write_text(cv_text(rows))
    return path


def test_the_held_out_table_is_read_per_category_and_not_past_its_section() -> None:
    figures = criterion.held_out_figures(REPORT)
    assert figures == {"coding": 90.0, "math": 70.0, "all": 75.0, "mean of the categories": 80.0}


def test_the_cross_validation_rows_are_read_and_the_summary_table_is_not() -> None:
    rows = criterion.cv_figures(cv_text([("a", "coding", 30, 50.0), ("b", "math", 5, 100.0)]))
    assert rows == {("a", "coding"): (30, 50.0), ("b", "math"): (5, 100.0)}


def test_small_sources_and_sources_one_run_lacks_do_not_count(tmp_path: Path) -> None:
    # Run one has an extra coding source ("c"), run two does not; "b" is under 20 prompts in both, "e" exactly 20.
    one = write_run(tmp_path / "one", {"7": [("a", "coding", 30, 60.0), ("e", "coding", 20, 80.0),
                                            ("c", "coding", 30, 0.0), ("b", "math", 19, 0.0),
                                            ("d", "math", 40, 90.0)]})
    two = write_run(tmp_path / "two", {"7": [("a", "coding", 30, 80.0), ("e", "coding", 20, 100.0),
                                            ("b", "math", 19, 0.0), ("d", "math", 40, 70.0)]})
    criteria = criterion.report([one, two], out=io.StringIO())
    # Shared: (a, coding), (e, coding) and (d, math). Run one: coding (60 + 80) / 2 = 70, math 90, so a
    # cross-validation mean of 80 (each category weighs the same, not each source); the test mean is 80.
    assert criteria[str(one)] == (80.0 + 80.0) / 2
    assert criteria[str(two)] == (80.0 + (90.0 + 70.0) / 2) / 2


def test_a_variants_criterion_is_the_mean_over_its_seeds(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", {"7": [("a", "coding", 30, 60.0)], "1": [("a", "coding", 30, 80.0)]})
    (tmp_path / "run" / "report-old.md").write_text(REPORT)  # not a seed's report
    out = io.StringIO()
    criteria = criterion.report([run], out=out)
    assert criteria[str(run)] == ((80.0 + 60.0) / 2 + (80.0 + 80.0) / 2) / 2
    assert "criterion over 2 seeds: 75.00" in out.getvalue()


def test_runs_sharing_no_source_or_missing_a_file_stop_with_a_message(tmp_path: Path) -> None:
    one = write_run(tmp_path / "one", {"7": [("a", "coding", 30, 60.0)]})
    two = write_run(tmp_path / "two", {"7": [("b", "coding", 30, 60.0)]})
    with pytest.raises(SystemExit, match="shared"):
        criterion.report([one, two], out=io.StringIO())
    (one / "cv-7.md").unlink()
    with pytest.raises(SystemExit, match="missing"):
        criterion.report([one], out=io.StringIO())
