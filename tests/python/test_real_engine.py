"""The official `ollama` and `openai` clients against Switchyard in front of a real engine.

llama.cpp's `llama-server` (built by `scripts/llama-server.sh`, serving tiny random-weight GGUF models it writes) is
an `openai` backend of `switchyard serve`, beside the simulator as the local Ollama. At temperature 0 the engine is
deterministic, so every answer through Switchyard, on either surface, must be the answer the engine gives directly.

Without a built engine these tests are skipped with the reason, unless `SY_REQUIRE_REAL_ENGINE=1` (set by
`scripts/test.sh` once the build succeeded), which makes a missing engine a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import ollama
import openai
import pytest

from conftest import REPO_ROOT, ROUTER_ANNOUNCEMENT, binary, start_server, stop_server

LLAMA_DIR = Path(os.environ.get("SY_LLAMA_DIR", REPO_ROOT / "target" / "llama"))
LLAMA_BIN = LLAMA_DIR / "bin" / "llama-server"
MODELS = LLAMA_DIR / "models"
QUESTION = [{"role": "user", "content": "Name three colours."}]


def engine_or_skip() -> Path:
    ready = LLAMA_BIN.is_file() and (MODELS / "tiny-chat.gguf").is_file() and (MODELS / "tiny-embed.gguf").is_file()
    if ready:
        return LLAMA_BIN
    why = f"no llama-server and tiny models under {LLAMA_DIR} (run scripts/llama-server.sh)"
    if os.environ.get("SY_REQUIRE_REAL_ENGINE") == "1":
        pytest.fail(f"SY_REQUIRE_REAL_ENGINE=1 but {why}")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_engine(model: str, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(LLAMA_BIN), "-m", str(MODELS / f"{model}.gguf"), "--alias", model, "-t", "1", "-c", "2048",
           "--host", "127.0.0.1", "--port", str(port), "--no-webui", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama-server for {model} did not become healthy")
        time.sleep(0.05)


@pytest.fixture
def world(start_sim: Callable[..., str], tmp_path: Path) -> Iterator[dict[str, str]]:
    engine_or_skip()
    chat, chat_url = start_engine("tiny-chat", "--jinja")
    embed, embed_url = start_engine("tiny-embed", "--embeddings", "--pooling", "mean")
    sim = start_sim()
    config = tmp_path / "switchyard.toml"
    config.write_text(
        f'[[backends]]\nname = "llamacpp"\nurl = "{chat_url}"\n\n'
        f'[[backends]]\nname = "llamacpp-embed"\nurl = "{embed_url}"\n'
        'models = [{ name = "tiny-embed", embedding = true }]\n'
    )
    env = {
        "SWITCHYARD_OLLAMA_URL": sim,
        "SWITCHYARD_VRAM_PROBE": "sim",
        "SWITCHYARD_DATABASE_URL": f"sqlite://{tmp_path / 'switchyard.db'}",
        "RUST_LOG": "warn",
    }
    router = binary("SY_ROUTER_BIN", "switchyard")
    proc, url = start_server([str(router), "--config", str(config), "serve", "--listen", "127.0.0.1:0"],
                             ROUTER_ANNOUNCEMENT, env)
    yield {"router": url, "engine": chat_url}
    stop_server(proc)
    for p in (chat, embed):
        p.kill()
        p.wait()


def test_the_ollama_client_gets_the_engines_own_answers(world: dict[str, str]) -> None:
    direct = openai.OpenAI(base_url=f"{world['engine']}/v1", api_key="unused")
    expected = direct.chat.completions.create(model="tiny-chat", messages=QUESTION, temperature=0, seed=1, max_tokens=24)
    text = expected.choices[0].message.content
    assert text

    client = ollama.Client(host=world["router"])
    names = [m.model for m in client.list().models]
    assert "tiny-chat:latest" in names and "tiny-embed:latest" in names, names
    options = {"temperature": 0, "seed": 1, "num_predict": 24}
    answer = client.chat(model="tiny-chat", messages=QUESTION, options=options)
    assert answer.message.content == text
    assert answer.done and answer.eval_count == expected.usage.completion_tokens
    chunks = list(client.chat(model="tiny-chat", messages=QUESTION, options=options, stream=True))
    assert "".join(c.message.content for c in chunks) == text
    assert chunks[-1].done and chunks[-1].done_reason in ("stop", "length")

    raw = direct.completions.create(model="tiny-chat", prompt="Once upon a time", temperature=0, seed=1, max_tokens=12)
    generated = client.generate(model="tiny-chat", prompt="Once upon a time", raw=True, options={**options, "num_predict": 12})
    assert generated.response == raw.choices[0].text

    # Fill-in-the-middle (as Continue's autocomplete asks for it): the engine's /infill answer.
    prefix, suffix = "def area(width, height):\n    ", "\n    return result\n"
    infill = {"input_prefix": prefix, "input_suffix": suffix, "n_predict": 12, "temperature": 0, "seed": 1}
    request = urllib.request.Request(f"{world['engine']}/infill", data=json.dumps(infill).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        middle = json.load(r)["content"]
    filled = client.generate(model="tiny-chat", prompt=prefix, suffix=suffix, options={**options, "num_predict": 12})
    assert middle and filled.response == middle and filled.done
    assert "insert" in (client.show("tiny-chat").capabilities or [])

    embedded = client.embed(model="tiny-embed", input=["red", "green"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) >= 16
    shown = client.show("tiny-chat")
    assert "completion" in (shown.capabilities or [])


def test_the_openai_client_gets_the_engines_own_answers(world: dict[str, str]) -> None:
    direct = openai.OpenAI(base_url=f"{world['engine']}/v1", api_key="unused")
    via = openai.OpenAI(base_url=f"{world['router']}/v1", api_key="unused")
    kwargs = {"model": "tiny-chat", "messages": QUESTION, "temperature": 0, "seed": 1, "max_tokens": 24}
    expected = direct.chat.completions.create(**kwargs).choices[0].message.content
    got = via.chat.completions.create(**kwargs)
    assert got.choices[0].message.content == expected
    assert got.model == "tiny-chat"
    stream = via.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == expected
    assert usage is not None and usage.completion_tokens > 0

    prompt = {"model": "tiny-chat", "prompt": "Once upon a time", "temperature": 0, "seed": 1, "max_tokens": 12}
    assert via.completions.create(**prompt).choices[0].text == direct.completions.create(**prompt).choices[0].text

    vectors = via.embeddings.create(model="tiny-embed", input=["red", "green"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) >= 16
    assert {"tiny-chat:latest", "tiny-embed:latest"} <= {m.id for m in via.models.list().data}
