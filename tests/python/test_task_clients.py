"""Task rules and cascades through the official clients: a task named as the virtual model `auto:NAME` or by the
`x-switchyard-task` header, listed by the model listings, its token cap applied, and a cascade's answer (whole, or
streamed with `x-switchyard-cascade: buffer`) read by the `ollama` and `openai` libraries as any answer is."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import ollama
import openai
import pytest

TASKS = """
[tasks.short]
max_tokens = 5

[tasks.agent]
cascade = ["llama3.2:3b", "llama3.1:8b"]
"""

QUESTION = [{"role": "user", "content": "Tell me about lighthouses."}]


@pytest.fixture
def task_router_url(start_router: Callable[..., str], tmp_path: Path) -> str:
    config = tmp_path / "switchyard.toml"
    config.write_text(TASKS)
    return start_router(config=str(config))


def test_the_ollama_client_uses_a_task_by_its_virtual_model(task_router_url: str) -> None:
    client = ollama.Client(host=task_router_url)
    names = [m.model for m in client.list().models]
    assert "auto:short" in names and "auto:agent" in names, names
    capped = client.chat(model="auto:short", messages=QUESTION, options={"num_predict": 100})
    assert capped.eval_count == 5 and capped.done_reason == "length"
    answered = client.chat(model="auto:agent", messages=QUESTION)
    assert answered.message.content and answered.model == "llama3.2:3b"


def test_the_openai_client_uses_tasks_and_a_buffered_cascade_stream(task_router_url: str) -> None:
    oai = openai.OpenAI(base_url=f"{task_router_url}/v1", api_key="unused")
    assert {"auto:short", "auto:agent"} <= {m.id for m in oai.models.list()}
    capped = oai.chat.completions.create(model="auto", messages=QUESTION, max_tokens=100,
                                         extra_headers={"x-switchyard-task": "short"})
    assert capped.usage is not None and capped.usage.completion_tokens == 5
    assert capped.choices[0].finish_reason == "length"

    raw = oai.chat.completions.with_raw_response.create(model="auto:agent", messages=QUESTION)
    assert raw.headers["x-switchyard-cascade-step"] == "1/2"
    whole = raw.parse().choices[0].message.content
    assert whole

    stream = oai.chat.completions.create(model="auto:agent", messages=QUESTION, stream=True,
                                         extra_headers={"x-switchyard-cascade": "buffer"})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == whole

    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model="auto:nosuchtask", messages=QUESTION)
    assert "unknown task" in str(refused.value)
