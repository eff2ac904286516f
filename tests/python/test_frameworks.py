"""The frameworks people put in front of Ollama, unchanged, against `switchyard serve` in front of the simulator:
LangChain (`langchain-ollama`, `langchain-openai`), LlamaIndex (`llama-index-llms-ollama`,
`llama-index-embeddings-ollama`) with their default settings, LiteLLM (`ollama_chat/`, `ollama/`, `openai/`) and the
`llm` command line with `llm-ollama`. Each test runs against one router (`box`) and against a fleet front over two
routers (`fleet`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

# LiteLLM fetches its model price list from the network at import unless told to use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TOOLS_MODELS = {"llama3.2:3b", "llama3.1:8b", "qwen2.5-coder:7b", "llama3.3:70b"}
VIRTUAL = {"auto", "auto:fast", "auto:quality"}


@pytest.fixture
def router_url(any_router_url: str) -> str:
    """This module's tests run against a box and against a fleet front."""
    return any_router_url


def last_decision(router_url: str) -> dict:
    return requests.get(f"{router_url}/admin/decisions?limit=1", timeout=10).json()["decisions"][0]


# --- LangChain ---------------------------------------------------------------------------------------------------


def test_langchain_ollama_chat_stream_and_model_name(router_url: str) -> None:
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model="auto", base_url=router_url)
    answer = llm.invoke("What is the capital of France?")
    assert answer.content
    # The answer names the model that served it, not the virtual one.
    assert answer.response_metadata["model"] not in VIRTUAL
    chunks = list(llm.stream("Write a haiku about trains."))
    assert len(chunks) > 1
    assert "".join(str(c.content) for c in chunks)


def test_langchain_ollama_tools_go_to_a_tool_model(router_url: str) -> None:
    from langchain_core.tools import tool
    from langchain_ollama import ChatOllama

    @tool
    def get_current_weather(city: str, unit: str) -> str:
        """Get the current weather for a city, in celsius or fahrenheit."""
        return f"20 degrees {unit} in {city}"

    llm = ChatOllama(model="auto", base_url=router_url).bind_tools([get_current_weather])
    answer = llm.invoke("What is the weather in Paris, in celsius?")
    assert answer.response_metadata["model"] in TOOLS_MODELS
    assert answer.tool_calls and answer.tool_calls[0]["name"] == "get_current_weather"


def test_langchain_ollama_structured_output(router_url: str) -> None:
    from langchain_ollama import ChatOllama
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str
        population: int

    llm = ChatOllama(model="auto", base_url=router_url).with_structured_output(City, method="json_schema")
    city = llm.invoke("Describe Lyon as JSON.")
    assert isinstance(city, City)


def test_langchain_ollama_embeddings_with_default_options(router_url: str) -> None:
    # OllamaEmbeddings sends every option it knows, null when unset.
    from langchain_ollama import OllamaEmbeddings

    emb = OllamaEmbeddings(model="nomic-embed-text", base_url=router_url)
    one = emb.embed_query("hello")
    many = emb.embed_documents(["a", "b"])
    assert len(one) > 10 and all(isinstance(x, float) for x in one)
    assert len(many) == 2 and len(many[0]) == len(one)


def test_langchain_openai_chat_and_stream(router_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="auto", base_url=f"{router_url}/v1", api_key="unused")
    answer = llm.invoke("What is 17 * 23?")
    assert answer.content
    assert answer.response_metadata["model_name"] not in VIRTUAL
    chunks = list(llm.stream("Write a haiku about trains."))
    assert "".join(str(c.content) for c in chunks)


def test_langchain_openai_tool_choice_picks_the_tool(router_url: str) -> None:
    # LangChain sends a named tool_choice for a chosen tool and for structured output by function calling; Ollama
    # has no tool_choice, so the router sends only the named tool. The simulator picks a tool by the prompt's words:
    # here it would call the weather tool if both were sent.
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    @tool
    def get_current_weather(city: str) -> str:
        """Get the current weather for a city."""
        return f"20 degrees in {city}"

    @tool
    def get_time(zone: str) -> str:
        """Current time in a time zone."""
        return f"12:00 in {zone}"

    llm = ChatOpenAI(model="auto", base_url=f"{router_url}/v1", api_key="unused")
    answer = llm.bind_tools([get_current_weather, get_time], tool_choice="get_time").invoke(
        "What's the weather like in Paris?"
    )
    assert [c["name"] for c in answer.tool_calls] == ["get_time"]
    answer = llm.bind_tools([get_current_weather, get_time]).invoke("What's the weather like in Paris?")
    assert [c["name"] for c in answer.tool_calls] == ["get_current_weather"]

    class City(BaseModel):
        name: str
        country: str

    city = llm.with_structured_output(City, method="function_calling").invoke("Describe Lyon.")
    assert isinstance(city, City)


# --- LlamaIndex --------------------------------------------------------------------------------------------------


def test_llamaindex_ollama_with_default_settings(router_url: str) -> None:
    # Its defaults send `"options": {"temperature": null, ...}`.
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    llm = Ollama(model="auto", base_url=router_url, request_timeout=60.0)
    assert llm.complete("What is the capital of Peru?").text
    chat = llm.chat([ChatMessage(role="user", content="Say hello.")])
    assert chat.message.content
    streamed = list(llm.stream_complete("Write a haiku about trains."))
    assert streamed and streamed[-1].text


def test_llamaindex_ollama_embeddings(router_url: str) -> None:
    from llama_index.embeddings.ollama import OllamaEmbedding

    emb = OllamaEmbedding(model_name="nomic-embed-text", base_url=router_url)
    one = emb.get_text_embedding("hello")
    assert len(one) > 10
    assert len(emb.get_query_embedding("hi")) == len(one)


# --- LiteLLM -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["ollama_chat", "ollama"])
def test_litellm_ollama_prefixes(router_url: str, prefix: str) -> None:
    import litellm

    answer = litellm.completion(
        model=f"{prefix}/auto", api_base=router_url, messages=[{"role": "user", "content": "What is 2 + 2?"}]
    )
    assert answer.choices[0].message.content
    streamed = litellm.completion(
        model=f"{prefix}/auto",
        api_base=router_url,
        messages=[{"role": "user", "content": "Write a haiku about trains."}],
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed)


def test_litellm_openai_prefix(router_url: str) -> None:
    import litellm

    answer = litellm.completion(
        model="openai/auto",
        api_base=f"{router_url}/v1",
        api_key="unused",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
    )
    assert answer.choices[0].message.content
    assert answer.model not in VIRTUAL


# --- llm ---------------------------------------------------------------------------------------------------------


def run_llm(router_url: str, tmp_path: Path, *args: str) -> str:
    llm = Path(sys.executable).with_name("llm")
    env = {**os.environ, "OLLAMA_HOST": router_url, "LLM_USER_PATH": str(tmp_path / "llm")}
    done = subprocess.run([str(llm), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_llm_lists_each_virtual_model_and_prompts_auto(router_url: str, tmp_path: Path) -> None:
    listed = run_llm(router_url, tmp_path, "models")
    for name in VIRTUAL:
        assert f"ollama/{name}" in listed.replace(":latest", ""), listed
    answer = run_llm(router_url, tmp_path, "-m", "ollama/auto", "What is the capital of Italy?")
    assert answer.strip()
    # The request really asked for `auto` (virtual models were once merged into one entry by a shared digest).
    assert last_decision(router_url)["requested"] in {"auto", "auto:latest"}


def test_langchain_openai_on_the_responses_api(router_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="auto", base_url=f"{router_url}/v1", api_key="unused", use_responses_api=True)
    assert llm.invoke("What is the capital of Peru?").text


def test_langchain_openai_structured_output_streams_on_the_responses_api(router_url: str) -> None:
    # LangChain parses a streamed Responses answer as structured output only when the `response` object repeats the
    # request's `text.format`, as OpenAI's does.
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    llm = ChatOpenAI(model="auto", base_url=f"{router_url}/v1", api_key="unused", use_responses_api=True)
    structured = llm.with_structured_output(City)
    assert isinstance(structured.invoke("Describe Lyon."), City)
    streamed = list(structured.stream("Describe Lyon."))
    assert streamed and isinstance(streamed[-1], City)
