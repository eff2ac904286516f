"""The official `ollama` and `openai` Python clients, unchanged, against the simulator.

Whatever these clients accept from the simulator they accept from a real Ollama: list, show, ps, generate and chat
(streaming and not), embeddings, errors, load/pin/unload through keep_alive, and the OpenAI-compatible surface with
tool calls.
"""

from __future__ import annotations

import json
import time

import ollama
import openai
import pytest

CHAT_MODEL = "llama3.2:3b"
TOOLS_MODEL = "llama3.1:8b"
EMBED_MODEL = "nomic-embed-text"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture
def client(sim_url: str) -> ollama.Client:
    return ollama.Client(host=sim_url)


@pytest.fixture
def oai(sim_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim_url}/v1", api_key="unused")


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    """Polls `condition` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_list(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    assert CHAT_MODEL in models
    assert "nomic-embed-text:latest" in models
    llama = models[CHAT_MODEL]
    assert llama.size > 1_000_000_000
    assert len(llama.digest) == 64
    assert llama.details.family == "llama"
    assert llama.details.parameter_size == "3.2B"
    assert llama.details.quantization_level == "Q4_K_M"
    assert llama.modified_at is not None


def test_show(client: ollama.Client) -> None:
    info = client.show(CHAT_MODEL)
    assert "tools" in info.capabilities
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.modelinfo["llama.context_length"] == 131072
    assert info.details.format == "gguf"
    assert info.template and info.modelfile


def test_generate(client: ollama.Client) -> None:
    answer = client.generate(model=CHAT_MODEL, prompt="Tell me about trains.", options={"num_predict": 16})
    assert answer.done
    assert answer.done_reason == "length"
    assert answer.eval_count == 16
    assert answer.response
    assert answer.model == CHAT_MODEL
    assert answer.total_duration and answer.total_duration >= answer.eval_duration


def test_generate_streaming(client: ollama.Client) -> None:
    chunks = list(client.generate(model=CHAT_MODEL, prompt="Tell me about trains.", stream=True))
    assert len(chunks) > 2
    assert all(not c.done for c in chunks[:-1])
    assert chunks[-1].done and chunks[-1].done_reason == "stop"
    assert "".join(c.response for c in chunks)
    assert chunks[-1].context


def test_chat(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Hello!"}]
    answer = client.chat(model=CHAT_MODEL, messages=messages)
    assert answer.message.role == "assistant"
    assert answer.message.content
    streamed = list(client.chat(model=CHAT_MODEL, messages=messages, stream=True))
    assert streamed[-1].done
    assert "".join(c.message.content or "" for c in streamed) == answer.message.content


def test_chat_tools(client: ollama.Client) -> None:
    answer = client.chat(
        model=TOOLS_MODEL,
        messages=[{"role": "user", "content": "What is the weather in Lisbon?"}],
        tools=[WEATHER_TOOL],
    )
    calls = answer.message.tool_calls
    assert calls and calls[0].function.name == "get_current_weather"
    assert calls[0].function.arguments == {"city": "Lisbon", "unit": "celsius"}


def test_embed(client: ollama.Client) -> None:
    answer = client.embed(model=EMBED_MODEL, input=["sort a list in python", "python code that sorts a list"])
    assert len(answer.embeddings) == 2
    assert all(len(e) == 768 for e in answer.embeddings)
    norm = sum(x * x for x in answer.embeddings[0])
    assert abs(norm - 1.0) < 1e-3
    legacy = client.embeddings(model=EMBED_MODEL, prompt="hello")
    assert len(legacy.embedding) == 768


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="no-such-model:1b", prompt="hi")
    assert err.value.status_code == 404
    assert "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model:1b", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404


def test_load_pin_and_unload(client: ollama.Client) -> None:
    loaded = client.generate(model=CHAT_MODEL, keep_alive=-1)
    assert loaded.done_reason == "load"
    running = client.ps().models
    assert [m.model for m in running] == [CHAT_MODEL]
    assert running[0].expires_at.year > 2300
    assert running[0].size_vram == running[0].size
    assert running[0].context_length == 32768

    unloaded = client.generate(model=CHAT_MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    wait_until(lambda: not client.ps().models, "the model to unload")


def test_openai_models(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert CHAT_MODEL in ids
    assert oai.models.retrieve(CHAT_MODEL).owned_by == "library"


def test_openai_chat(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=10
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert completion.usage.completion_tokens == 10


def test_openai_chat_streaming(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10


def test_openai_tools(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model=TOOLS_MODEL,
        messages=[{"role": "user", "content": "How is the weather in Oslo?"}],
        tools=[WEATHER_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_current_weather"
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == {"city": "Oslo", "unit": "celsius"}


def test_openai_embeddings(oai: openai.OpenAI) -> None:
    answer = oai.embeddings.create(model=EMBED_MODEL, input=["first text", "second text"])
    assert [d.index for d in answer.data] == [0, 1]
    assert len(answer.data[0].embedding) == 768
    floats = oai.embeddings.create(model=EMBED_MODEL, input="first text", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(answer.data[0].embedding, abs=1e-6)


def test_openai_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
