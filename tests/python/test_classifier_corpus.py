"""The classifier corpus's derived source (scripts/classifier/sources_attached.py): no network, no binaries."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "classifier"))

import fetch_corpus  # noqa: E402
import sources_attached as attached  # noqa: E402

LONG = [f"Passage {i}. " + "The river flows past the old mill and into the valley. " * 30 for i in range(5)]
# Spare passages are at least 300 characters; a short one is attached whole.
SHORT = ["The river flows past the old mill. " * 10]


def test_only_training_prompts_of_the_named_sources_are_eligible() -> None:
    # The sources it derives from are training sources, never validation or test ones.
    named = attached.WRITING_SOURCES | attached.QUESTION_SOURCES
    assert not named & (fetch_corpus.TEST_SOURCES | fetch_corpus.VALIDATION_SOURCES)
    assert attached.eligible("sharegpt_heuristic", "train", "creative", "Write a poem about rain.")
    assert attached.eligible("triviaqa", "train", "factual", "Who wrote Hamlet?")
    # Whatever a row's source, a validation or test row is never used.
    assert not attached.eligible("sharegpt_heuristic", "validation", "creative", "Write a poem about rain.")
    assert not attached.eligible("writingbench", "test", "creative", "Write a poem about rain.")
    # Other categories of a named source, and requests already carrying material, are left alone.
    assert not attached.eligible("sharegpt_heuristic", "train", "general", "How do I plan a trip?")
    assert not attached.eligible("sharegpt_heuristic", "train", "creative", "x" * (attached.MAX_REQUEST_CHARS + 1))
    assert not attached.eligible("triviaqa", "train", "factual", "q" * attached.MAX_QUESTION_CHARS)


def test_writing_stays_creative_and_questions_over_a_passage_become_extraction() -> None:
    requests = [("alpaca_eval", "creative", f"Write a short poem number {i}.") for i in range(10)]
    questions = [("triviaqa", "factual", f"Who was president in year {1900 + i}?")
                 for i in range(attached.QUESTIONS + 50)]
    rows = attached.derive(requests + questions, LONG + SHORT)
    creative = [r for r in rows if r["category"] == "creative"]
    extraction = [r for r in rows if r["category"] == "extraction"]
    assert len(creative) == len(requests)
    assert len(extraction) == attached.QUESTIONS
    for row, (_, _, request) in zip(creative, requests):
        assert request in row["text"]
        assert row["derived_from"] == "alpaca_eval"
    asked = {text for _, _, text in questions}
    for row in extraction:
        assert row["derived_from"] == "triviaqa"
        assert sum(question in row["text"] for question in asked) >= 1
    for row in rows:
        # Each carries a passage: a long one cut to the shortest length drawn at least, a short one whole.
        assert "The river flows past the old mill" in row["text"]
        assert len(row["text"]) > min(attached.PASSAGE_CHARS[0], len(SHORT[0]))
    # Seeded: the same input gives the same prompts.
    assert attached.derive(requests + questions, LONG + SHORT) == rows


def test_no_passages_no_prompts() -> None:
    assert attached.derive([("alpaca_eval", "creative", "Write a haiku.")], []) == []


def test_helm_prompts_are_read_with_their_slots_filled(tmp_path) -> None:
    """HELM's prompt list is YAML read line by line: roots with ${slots} filled by each slot's first value, quoted and
    plain scalars, comments skipped, and the keyword rules labelling (or dropping) each prompt."""
    import zipfile

    import sources_chat_writing_rag as chat

    yaml = "\n".join([
        "rules:",
        "- category: Root",
        "  tags: [funny]",
        "  expansions:",
        "    # a comment",
        "    - text: Write a short story where a pencil is the main character.",
        '    - text: "Write a letter to my landlord about the heating in ${City}: it\\u2019s cold."',
        "    - text: Who won the 1998 World Cup?",
        "",
        "- category: City",
        "  expansions:",
        "    - text: Phoenix",
        "    - text: London",
    ])
    wheel = tmp_path / "crfm_helm-0.5.16-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("helm/benchmark/scenarios/best_chatgpt_prompts.yaml", yaml)
    rows = list(chat.load("helm_chatgpt_prompts", str(wheel)))
    assert rows == [
        {"text": "Write a short story where a pencil is the main character.", "category": "creative"},
        {"text": "Write a letter to my landlord about the heating in Phoenix: it\u2019s cold.", "category": "general"},
    ]


def test_riddles_are_read_from_the_literal_without_running_the_module(tmp_path) -> None:
    """pyriddle's data is a Python module: its `data` literal is parsed, its riddles become prompts without their
    answers, duplicates go, and nothing in the module is run (a statement that would raise is never executed)."""
    import zipfile

    import sources_code_math_logic as code_math_logic

    module = "\n".join([
        "raise RuntimeError('the module was run')",
        "data = {",
        "  'What goes up but never comes down?': ['age'],",
        "  \"  What has keys but can't open locks?  \": ['piano', 'keyboard'],",
        "  'What goes up but never comes down?': ['age'],",
        "}",
        "other = {'not a riddle': ['x']}",
    ])
    wheel = tmp_path / "pyriddle-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pyriddle/data.py", module)
    rows = list(code_math_logic.load("riddles", str(wheel)))
    assert rows == [
        {"text": "What goes up but never comes down?", "category": "reasoning"},
        {"text": "What has keys but can't open locks?", "category": "reasoning"},
    ]
