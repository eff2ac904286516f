"""The response cache through the official clients: a repeated request is answered from the cache, and its replay,
whole or streamed, is read by the `ollama` and `openai` libraries exactly as a fresh answer is."""

from __future__ import annotations

import httpx
import ollama
import openai

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def cache_stats(router: str) -> dict:
    return httpx.get(f"{router}/admin/cache", timeout=10).json()


def test_the_ollama_client_reads_replays_whole_and_streamed(cached_router_url: str) -> None:
    client = ollama.Client(host=cached_router_url)
    first = client.chat(model="llama3.2:3b", messages=QUESTION, options={"temperature": 0})
    assert first.message.content
    again = client.chat(model="llama3.2:3b", messages=QUESTION, options={"temperature": 0})
    assert again.message.content == first.message.content
    assert again.eval_count == first.eval_count and again.done_reason == first.done_reason
    parts = list(client.chat(model="llama3.2:3b", messages=QUESTION, options={"temperature": 0}, stream=True))
    assert "".join(p.message.content or "" for p in parts) == first.message.content
    assert parts[-1].done and parts[-1].eval_count == first.eval_count
    stats = cache_stats(cached_router_url)
    assert (stats["misses"], stats["hits"]) == (1, 2), stats

    generated = client.generate(model="llama3.2:3b", prompt="Say hi.", options={"seed": 3})
    streamed = list(client.generate(model="llama3.2:3b", prompt="Say hi.", options={"seed": 3}, stream=True))
    assert "".join(p.response for p in streamed) == generated.response
    assert cache_stats(cached_router_url)["hits"] == 3


def test_the_openai_client_reads_replays_whole_and_streamed(cached_router_url: str) -> None:
    oai = openai.OpenAI(base_url=f"{cached_router_url}/v1", api_key="unused")
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=QUESTION, temperature=0)
    assert raw.headers["x-switchyard-cache"] == "miss"
    first = raw.parse()
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=QUESTION, temperature=0)
    assert raw.headers["x-switchyard-cache"] == "hit"
    again = raw.parse()
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.model == first.model != "auto"
    assert again.usage.completion_tokens == first.usage.completion_tokens

    chunks = list(
        oai.chat.completions.create(
            model="auto", messages=QUESTION, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == first.usage.completion_tokens
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)

    # The Responses API reads the same entry (it is the same chat request).
    response = oai.responses.create(model="auto", input="What is the capital of France?", temperature=0)
    assert response.output_text == first.choices[0].message.content
    stats = cache_stats(cached_router_url)
    assert (stats["misses"], stats["hits"]) == (1, 3), stats
