"""The official `ollama` and `openai` Python clients, unchanged, against `switchyard serve` in front of the simulator,
and against a fleet front over two such routers (each test runs against both).

Every route the router serves is driven through the libraries: listing (with the virtual `auto` models), show, ps,
generate and chat (streaming and not, explicit models and `auto`), tools, embeddings, errors, load/pin/unload through
keep_alive, and the OpenAI surface with streaming, tools, completions and both embedding encodings.
"""

from __future__ import annotations

import json
import time

import ollama
import openai
import pytest

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}

TOOLS_MODELS = {"llama3.2:3b", "llama3.1:8b", "qwen2.5-coder:7b", "llama3.3:70b"}


@pytest.fixture
def client(any_router_url: str) -> ollama.Client:
    return ollama.Client(host=any_router_url)


@pytest.fixture
def oai(any_router_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{any_router_url}/v1", api_key="unused")


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_list_shows_real_and_virtual_models(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {"llama3.2:3b", "deepseek-r1:14b", "nomic-embed-text:latest"} <= names
    assert {"auto", "auto:fast", "auto:quality"} <= names


def test_show_real_and_auto(client: ollama.Client) -> None:
    shown = client.show("qwen2.5-coder:7b")
    assert "tools" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "qwen2"
    auto = client.show("auto")
    assert "completion" in auto.capabilities and "tools" in auto.capabilities
    # Ollama's CLI would take a model listing these for an embedding model, or think by default.
    assert "embedding" not in auto.capabilities and "thinking" not in auto.capabilities
    # `auto:latest` is `auto`, as chat reads it (LlamaIndex asks show for the context window first).
    assert client.show("auto:latest").capabilities == auto.capabilities
    # The longest context auto's models serve (local ones: vram.num_ctx, 4096 by default); Continue sizes prompts by
    # `<arch>.context_length`.
    assert auto.modelinfo["switchyard.context_length"] == 4096


def test_generate_and_chat_explicit_and_auto(client: ollama.Client) -> None:
    answer = client.generate(model="llama3.2:3b", prompt="Say hello.", options={"num_predict": 8})
    assert answer.model == "llama3.2:3b"
    assert answer.done and answer.eval_count == 8
    streamed = list(client.generate(model="llama3.2:3b", prompt="Say hello.", stream=True, options={"num_predict": 8}))
    assert streamed[-1].done and len(streamed) > 2
    messages = [{"role": "user", "content": "Write a Python function that returns the factorial of n."}]
    chat = client.chat(model="auto", messages=messages)
    assert chat.model and chat.model != "auto", "the response names the model actually used"
    assert chat.message.content
    pieces = list(client.chat(model="auto", messages=messages, stream=True))
    assert pieces[-1].done and pieces[-1].model == pieces[0].model


def test_auto_with_tools_only_uses_tool_models(client: ollama.Client) -> None:
    answer = client.chat(
        model="auto", messages=[{"role": "user", "content": "What is the weather in Lisbon?"}], tools=[WEATHER_TOOL]
    )
    assert answer.model in TOOLS_MODELS
    call = answer.message.tool_calls[0]
    assert call.function.name == "get_current_weather"
    assert call.function.arguments["city"] == "Lisbon"


def test_thinking_levels_and_model_names_as_ollama_reads_them(client: ollama.Client, oai: openai.OpenAI) -> None:
    # Ollama takes a level only from gpt-oss; the router asks other thinking models `think: true` instead.
    messages = [{"role": "user", "content": "Is 91 prime?"}]
    for model in ["deepseek-r1:14b", "auto"]:
        r = client.chat(model=model, messages=messages, think="high")
        assert r.message.thinking, model
        assert r.message.content
    streamed = list(client.chat(model="auto", messages=messages, think="low", stream=True))
    assert "".join(c.message.thinking or "" for c in streamed)
    for kwargs in [{"reasoning_effort": "high"}, {"extra_body": {"reasoning": {"effort": "medium"}}}]:
        c = oai.chat.completions.create(model="auto", messages=messages, **kwargs)
        assert c.model == "deepseek-r1:14b", kwargs
        assert (c.choices[0].message.model_extra or {}).get("reasoning"), kwargs
    # Names match without regard to case, as in Ollama.
    r = client.chat(model="Llama3.2:3B", messages=[{"role": "user", "content": "hi"}])
    assert r.message.content


def test_embeddings_explicit_and_auto(client: ollama.Client) -> None:
    answer = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(answer.embeddings) == 2 and len(answer.embeddings[0]) == 768
    auto = client.embed(model="auto", input="route me to an embedding model")
    assert auto.model == "nomic-embed-text:latest"
    assert len(client.embeddings(model="nomic-embed-text", prompt="legacy").embedding) == 768


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model:1b", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404
    assert "not found" in err.value.error


def test_load_pin_and_unload_through_keep_alive(client: ollama.Client) -> None:
    loaded = client.generate(model="llama3.1:8b", keep_alive=-1)
    assert loaded.done_reason == "load"
    running = {m.model: m for m in client.ps().models}
    assert "llama3.1:8b" in running
    assert running["llama3.1:8b"].expires_at.year > 2300
    unloaded = client.generate(model="llama3.1:8b", keep_alive=0)
    assert unloaded.done_reason == "unload"
    wait_until(lambda: "llama3.1:8b" not in {m.model for m in client.ps().models}, "the model to unload")


def test_openai_models_include_auto(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"auto", "auto:fast", "auto:quality", "llama3.2:3b"} <= ids
    assert oai.models.retrieve("auto").owned_by == "switchyard"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


def test_openai_chat_auto_with_headers(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of Peru?"}], max_tokens=12
    )
    completion = raw.parse()
    assert raw.headers["x-switchyard-category"] == "factual"
    assert raw.headers["x-switchyard-model"] == completion.model
    assert raw.headers["x-request-id"]
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens <= 12


def test_openai_chat_streaming(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="auto:fast",
        messages=[{"role": "user", "content": "Tell me a joke."}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 10


def test_openai_tools(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "How is the weather in Oslo?"}], tools=[WEATHER_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments)["city"] == "Oslo"
    follow_up = oai.chat.completions.create(
        model=completion.model,
        messages=[
            {"role": "user", "content": "How is the weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "12 degrees and windy"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].message.content


def test_openai_completions(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(model="llama3.2:3b", prompt="Once upon a time", max_tokens=6)
    assert completion.choices[0].text
    assert completion.choices[0].finish_reason == "length"
    streamed = list(oai.completions.create(model="llama3.2:3b", prompt="Once upon a time", max_tokens=6, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_log_probabilities_on_both_surfaces(client: ollama.Client, oai: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Name three colours."}]
    native = client.chat(model="llama3.2:3b", messages=question, logprobs=True, top_logprobs=2, options={"num_predict": 5})
    assert native.logprobs and "".join(p.token for p in native.logprobs) == native.message.content
    assert all(len(p.top_logprobs or []) == 2 for p in native.logprobs)

    chat = oai.chat.completions.create(model="llama3.2:3b", messages=question, logprobs=True, top_logprobs=2,
                                       max_tokens=5)
    entries = chat.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == chat.choices[0].message.content
    assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
    assert entries[0].top_logprobs[0].token == entries[0].token
    streamed = oai.chat.completions.create(model="llama3.2:3b", messages=question, logprobs=True, max_tokens=5,
                                           stream=True)
    tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert "".join(tokens) == chat.choices[0].message.content
    plain = oai.chat.completions.create(model="llama3.2:3b", messages=question, max_tokens=5)
    assert plain.choices[0].logprobs is None

    completion = oai.completions.create(model="llama3.2:3b", prompt="Once upon a time", max_tokens=5, logprobs=2)
    legacy = completion.choices[0].logprobs
    assert "".join(legacy.tokens) == completion.choices[0].text
    assert len(legacy.token_logprobs) == len(legacy.tokens) and all(len(t) <= 2 for t in legacy.top_logprobs)
    assert legacy.text_offset[0] == 0 and legacy.text_offset[1] == len(legacy.tokens[0])
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="llama3.2:3b", messages=question, top_logprobs=25, logprobs=True)
    assert err.value.body["param"] == "top_logprobs"


def test_openai_embeddings_both_encodings(oai: openai.OpenAI) -> None:
    default = oai.embeddings.create(model="nomic-embed-text", input=["first text", "second text"])
    assert [d.index for d in default.data] == [0, 1] and len(default.data[0].embedding) == 768
    floats = oai.embeddings.create(model="nomic-embed-text", input="first text", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(default.data[0].embedding, abs=1e-6)


def test_openai_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="auto", messages=[])
    assert err.value.body["param"] == "messages"


def test_openai_responses_api(oai: openai.OpenAI) -> None:
    answer = oai.responses.create(model="auto", input="What is the capital of France?", instructions="Be brief.")
    assert answer.status == "completed"
    assert answer.output_text
    assert answer.model not in {"auto", "auto:fast", "auto:quality"}
    assert answer.usage is not None and answer.usage.output_tokens > 0
    events = list(oai.responses.create(model="auto:fast", input=[{"role": "user", "content": "Write a haiku."}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and events[-1].response.output_text == text


def test_openai_responses_api_reasoning(oai: openai.OpenAI) -> None:
    # A reasoning model's thinking is a reasoning item before the message, whole and streamed, as Ollama's own
    # endpoint writes it; sent back in the next turn's input, it is accepted.
    answer = oai.responses.create(model="auto", input="Is 91 prime?", reasoning={"effort": "high"})
    assert answer.model == "deepseek-r1:14b"
    assert [item.type for item in answer.output] == ["reasoning", "message"]
    assert answer.output[0].summary[0].text and answer.output_text
    follow_up = [*[item.model_dump(exclude_none=True) for item in answer.output], {"role": "user", "content": "Why?"}]
    again = oai.responses.create(model="deepseek-r1:14b", input=follow_up)
    assert again.status == "completed" and again.output_text
    events = list(oai.responses.create(model="auto", input="Is 91 prime?", reasoning={"effort": "low"}, stream=True))
    thinking = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert thinking
    final = events[-1].response
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == thinking
    assert final.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_openai_responses_api_tools(oai: openai.OpenAI) -> None:
    tool = {"type": "function", **WEATHER_TOOL["function"]}
    answer = oai.responses.create(model="auto", input="What is the weather in Oslo, in celsius?", tools=[tool])
    calls = [item for item in answer.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_current_weather"
    assert json.loads(calls[0].arguments)["city"]
    assert answer.model in TOOLS_MODELS


def test_models_are_managed_through_the_router(client: ollama.Client) -> None:
    """pull (with progress), copy, create and delete through the router, as Open WebUI and the CLI do them."""
    client.delete("llama3.1:8b")
    assert "llama3.1:8b" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError):
        client.delete("llama3.1:8b")

    progress = list(client.pull("llama3.1:8b", stream=True))
    assert progress[0].status == "pulling manifest"
    assert any(p.total and p.completed is not None for p in progress)
    assert progress[-1].status == "success"
    deadline = time.monotonic() + 10
    while "llama3.1:8b" not in [m.model for m in client.list().models]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.chat(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}]).message.content

    client.copy("llama3.2:3b", "my-assistant")
    created = client.create(model="coder-x", from_="qwen2.5-coder:7b")
    assert created.status == "success"
    names = [m.model for m in client.list().models]
    assert "my-assistant:latest" in names and "coder-x:latest" in names
    with pytest.raises(ollama.ResponseError):
        client.pull("no-such-model:1b")


def test_blobs_are_uploaded_through_the_router(router_url: str, tmp_path) -> None:
    """`create_blob`, as the library sends it before creating a model from a local GGUF file: HEAD, then POST."""
    import hashlib

    client = ollama.Client(host=router_url)
    path = tmp_path / "model.gguf"
    data = bytes(range(256)) * 4096
    path.write_bytes(data)
    digest = client.create_blob(path)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    # Already there: the library's HEAD finds it, and the second call uploads nothing.
    assert client.create_blob(path) == digest
