"""The classifier corpus's derived source (scripts/classifier/sources_attached.py): no network, no binaries."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "classifier"))

import sources_attached as attached  # noqa: E402

PASSAGES = [f"Passage {i}. " + "The river flows past the old mill and into the valley. " * 30 for i in range(5)]


def test_only_training_prompts_of_the_named_sources_are_eligible() -> None:
    assert attached.eligible("sharegpt_heuristic", "train", "creative", "Write a poem about rain.")
    assert attached.eligible("triviaqa", "train", "factual", "Who wrote Hamlet?")
    # Validation and test sources never feed it, whatever their category.
    assert not attached.eligible("ifeval", "validation", "creative", "Write a poem about rain.")
    assert not attached.eligible("writingbench", "test", "creative", "Write a poem about rain.")
    # Other categories of a named source, and requests already carrying material, are left alone.
    assert not attached.eligible("sharegpt_heuristic", "train", "general", "How do I plan a trip?")
    assert not attached.eligible("sharegpt_heuristic", "train", "creative", "x" * (attached.MAX_REQUEST_CHARS + 1))
    assert not attached.eligible("triviaqa", "train", "factual", "q" * attached.MAX_QUESTION_CHARS)


def test_writing_stays_creative_and_questions_over_a_passage_become_extraction() -> None:
    prompts = [("creative", f"Write a short poem number {i}.") for i in range(10)]
    prompts += [("factual", f"Who was president in year {1900 + i}?") for i in range(attached.QUESTIONS + 50)]
    rows = attached.derive(prompts, PASSAGES)
    creative = [r for r in rows if r["category"] == "creative"]
    extraction = [r for r in rows if r["category"] == "extraction"]
    assert len(creative) == 10
    assert len(extraction) == attached.QUESTIONS
    for row, (_, request) in zip(creative, prompts):
        assert request in row["text"]
    for row in rows:
        # Each carries a passage, cut to at least the shortest length drawn.
        assert "The river flows past the old mill" in row["text"]
        assert len(row["text"]) > attached.PASSAGE_CHARS[0]
    # Seeded: the same input gives the same prompts.
    assert attached.derive(prompts, PASSAGES) == rows


def test_no_passages_no_prompts() -> None:
    assert attached.derive([("creative", "Write a haiku.")], []) == []
