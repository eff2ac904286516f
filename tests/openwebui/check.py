"""Checks that Open WebUI works against Switchyard (run by scripts/openwebui-check.sh, which starts the stack).

The stack is `switchyard-sim` (an Ollama simulator) <- `switchyard serve` <- Open WebUI, whose OLLAMA_BASE_URL is the
router. Each check prints one `PASS name (seconds): reason` or `FAIL name (seconds): reason` line; the exit status is
1 if any check failed.

- models:  Open WebUI's model list (`GET /api/models`) has the router's virtual models `auto`, `auto:fast`,
           `auto:quality` and every real model the router lists.
- chat:    a streamed chat through Open WebUI's API (`POST /api/chat/completions`, model `auto`) returns text, and the
           `model` field of its chunks is the real model the router chose (per `GET /admin/decisions`).
- pull:    a model deleted through the router (`DELETE /api/delete`) is pulled again through Open WebUI's Ollama
           proxy (`POST /ollama/api/pull`): progress lines with `total`/`completed`, then `success`, and Open WebUI
           lists the model again.
- browser: headless Chromium (playwright, launched from an existing executable) opens the UI, sends a prompt with
           the default model `auto`, waits for the finished answer and saves screenshots. It also prints what the UI
           shows as the answering model (INFO lines), next to the model the router actually chose.

Only `requests` and `playwright` (tests/openwebui/requirements.txt) are needed besides the standard library.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import requests

VIRTUAL_MODELS = ("auto", "auto:fast", "auto:quality")
HTTP_TIMEOUT_S = 30
# Deadlines of the browser check: the UI's first load, and the answer after the prompt is sent.
PAGE_LOAD_TIMEOUT_MS = 60_000
ANSWER_TIMEOUT_MS = 60_000
# Open WebUI caches Ollama's model list for MODELS_CACHE_TTL (1 s by default): a change shows within this deadline.
MODEL_LIST_TIMEOUT_S = 10
# The prompts; any text works, the simulator answers with filler text.
API_PROMPT = "Say hello in one short sentence."
UI_PROMPT = "Explain what a hash map is in two sentences."


class CheckFailed(Exception):
    """A check's failure, with the short reason printed on its FAIL line."""


def info(message: str) -> None:
    """An informational line (not a result)."""
    print(f"INFO  {message}", flush=True)


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Polls `condition` until it holds or `timeout_s` has passed; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


class Stack:
    """The running servers, as the check sees them: the router's and Open WebUI's base URLs and a signed-in token."""

    def __init__(self, router: str, webui: str) -> None:
        self.router = router.rstrip("/")
        self.webui = webui.rstrip("/")
        self.http = requests.Session()
        self.token = self._signin()

    def _signin(self) -> str:
        # With WEBUI_AUTH=False, Open WebUI signs anyone in as its single admin user (created on the first call).
        r = self.http.post(
            f"{self.webui}/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=HTTP_TIMEOUT_S
        )
        r.raise_for_status()
        return r.json()["token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def webui_model_ids(self) -> list[str]:
        r = self.http.get(f"{self.webui}/api/models", headers=self.auth, timeout=HTTP_TIMEOUT_S)
        r.raise_for_status()
        return [m["id"] for m in r.json()["data"]]

    def router_model_names(self) -> list[str]:
        r = self.http.get(f"{self.router}/api/tags", timeout=HTTP_TIMEOUT_S)
        r.raise_for_status()
        return [m["name"] for m in r.json()["models"]]

    def router_decisions(self) -> list[dict[str, Any]]:
        """The router's recent routing decisions, newest first."""
        r = self.http.get(f"{self.router}/admin/decisions", params={"limit": 1000}, timeout=HTTP_TIMEOUT_S)
        r.raise_for_status()
        return r.json()["decisions"]

    def new_auto_decisions(self, seen: set[str]) -> list[dict[str, Any]]:
        """Decisions for `auto` made since `seen` (the request ids known before), newest first."""
        return [d for d in self.router_decisions() if d["request_id"] not in seen and d["requested"] == "auto"]

    def decision_ids(self) -> set[str]:
        return {d["request_id"] for d in self.router_decisions()}


def check_models(stack: Stack) -> str:
    ids = stack.webui_model_ids()
    real = [name for name in stack.router_model_names() if name not in VIRTUAL_MODELS]
    if not real:
        raise CheckFailed("the router lists no real model")
    missing = [m for m in (*VIRTUAL_MODELS, *real) if m not in ids]
    if missing:
        raise CheckFailed(f"missing from Open WebUI's list: {missing} (it has {ids})")
    return f"{len(ids)} models: {', '.join(VIRTUAL_MODELS)} and the router's {len(real)} real ones ({', '.join(real)})"


def check_chat(stack: Stack) -> str:
    seen = stack.decision_ids()
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": API_PROMPT}]}
    text: list[str] = []
    chunk_models: set[str] = set()
    with stack.http.post(
        f"{stack.webui}/api/chat/completions", json=body, headers=stack.auth, stream=True, timeout=HTTP_TIMEOUT_S
    ) as r:
        r.raise_for_status()
        # Server-sent events: `data: {chunk}` lines, then `data: [DONE]`.
        for line in r.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise CheckFailed(f"error chunk: {chunk['error']}")
            if chunk.get("model"):
                chunk_models.add(chunk["model"])
            for choice in chunk.get("choices", []):
                text.append((choice.get("delta") or {}).get("content") or "")
    answer = "".join(text).strip()
    if not answer:
        raise CheckFailed("the stream carried no text")
    if len(chunk_models) != 1:
        raise CheckFailed(f"chunks name {sorted(chunk_models) or 'no model'}, expected exactly one")
    (answered,) = chunk_models
    if answered in VIRTUAL_MODELS:
        raise CheckFailed(f"chunks name {answered!r}, not the real model that answered")
    decisions = stack.new_auto_decisions(seen)
    if len(decisions) != 1:
        raise CheckFailed(f"expected one new routing decision for `auto`, the router shows {len(decisions)}")
    chosen = decisions[0]["chosen"]
    if chosen != answered:
        raise CheckFailed(f"chunks name {answered!r} but the router chose {chosen!r}")
    return f"{len(answer)} characters; chunks name {answered!r}, the model the router chose for `auto`"


def check_pull(stack: Stack, model: str) -> str:
    r = stack.http.request("DELETE", f"{stack.router}/api/delete", json={"model": model}, timeout=HTTP_TIMEOUT_S)
    if r.status_code != 200:
        raise CheckFailed(f"DELETE {stack.router}/api/delete {model}: HTTP {r.status_code} {r.text[:200]}")
    if model in stack.router_model_names():
        raise CheckFailed(f"{model} still listed by the router after deleting it")
    if not wait_until(lambda: model not in stack.webui_model_ids(), MODEL_LIST_TIMEOUT_S):
        raise CheckFailed(f"{model} still listed by Open WebUI {MODEL_LIST_TIMEOUT_S} s after deleting it")
    lines: list[dict[str, Any]] = []
    with stack.http.post(
        f"{stack.webui}/ollama/api/pull", json={"model": model}, headers=stack.auth, stream=True, timeout=HTTP_TIMEOUT_S
    ) as r:
        if r.status_code != 200:
            raise CheckFailed(f"pull through Open WebUI: HTTP {r.status_code} {r.text[:200]}")
        # Ollama's progress: one JSON object a line.
        for line in r.iter_lines(decode_unicode=True):
            if line.strip():
                lines.append(json.loads(line))
    if not lines:
        raise CheckFailed("the pull streamed nothing")
    if any("error" in line for line in lines):
        raise CheckFailed(f"the pull failed: {[line['error'] for line in lines if 'error' in line]}")
    progress = [line for line in lines if "total" in line and "completed" in line]
    if not progress:
        raise CheckFailed(f"no progress line with total/completed among {len(lines)} lines")
    if lines[-1].get("status") != "success":
        raise CheckFailed(f"the last line is {lines[-1]}, not success")
    if not wait_until(lambda: model in stack.webui_model_ids(), MODEL_LIST_TIMEOUT_S):
        raise CheckFailed(f"{model} not listed by Open WebUI {MODEL_LIST_TIMEOUT_S} s after the pull")
    return (
        f"deleted {model} (gone from both lists), pulled it through Open WebUI: {len(lines)} lines, "
        f"{len(progress)} with total/completed, last 'success'; listed again"
    )


# The last answer in the chat once it is finished (its copy button appears when it is done), else null.
FINISHED_ANSWER_JS = """() => {
    const bodies = [...document.querySelectorAll('.chat-assistant')];
    const body = bodies[bodies.length - 1];
    const root = body && body.closest('[id^="message-"]');
    if (!root || !root.querySelector('.copy-response-button')) return null;
    return {id: root.id.slice('message-'.length), text: body.innerText.trim()};
}"""


# Whether a tooltip (tippy.js, as Open WebUI uses) is shown and fully faded in.
TOOLTIP_SHOWN_JS = """() => [...document.querySelectorAll('.tippy-box[data-state="visible"]')]
    .some((box) => getComputedStyle(box).opacity === '1')"""


def check_browser(stack: Stack, chromium: str, out_dir: Path) -> str:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    # The changelog modal greets an admin whose settings have not seen this version; turn it off for this user.
    r = stack.http.post(
        f"{stack.webui}/api/v1/users/user/settings/update",
        json={"ui": {"showChangelog": False}},
        headers=stack.auth,
        timeout=HTTP_TIMEOUT_S,
    )
    r.raise_for_status()
    out_dir.mkdir(parents=True, exist_ok=True)
    seen = stack.decision_ids()
    sent_models: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def record_chat_request(request: Any) -> None:
                """Notes the model the UI asks for, from the body of its chat request."""
                if request.method == "POST" and request.url.endswith("/api/chat/completions"):
                    sent_models.append(json.loads(request.post_data or "{}").get("model", ""))

            page.on("request", record_chat_request)
            page.goto(f"{stack.webui}/", wait_until="domcontentloaded")
            page.wait_for_selector("#chat-input", timeout=PAGE_LOAD_TIMEOUT_MS)
            # If the changelog modal shows anyway (a release that reads another setting), close it.
            dismiss = page.get_by_text("Okay, Let's Go!")
            if dismiss.count() and dismiss.first.is_visible():
                dismiss.first.click()
            page.locator("#chat-input").click()
            page.keyboard.type(UI_PROMPT)
            page.keyboard.press("Enter")
            try:
                handle = page.wait_for_function(FINISHED_ANSWER_JS, timeout=ANSWER_TIMEOUT_MS, polling=250)
            except PlaywrightError as e:
                page.screenshot(path=str(out_dir / "chat.png"))
                raise CheckFailed(f"no finished answer within {ANSWER_TIMEOUT_MS / 1000:.0f} s ({type(e).__name__})")
            answer = handle.json_value()
            page.screenshot(path=str(out_dir / "chat.png"))
            message = page.locator(f'[id="message-{answer["id"]}"]')
            shown_name = " ".join(message.locator("#response-message-model-name").all_inner_texts()).strip()
            usage = " ".join(page.locator(f'[id="usage-{answer["id"]}"]').all_text_contents())
            # The info button's tooltip (Open WebUI's per-message usage popover).
            info_button = page.locator(f'[id="info-{answer["id"]}"]')
            if info_button.count():
                info_button.hover()
                try:  # the tooltip fades in: wait until it is fully opaque
                    page.wait_for_function(TOOLTIP_SHOWN_JS, timeout=5_000, polling=100)
                except PlaywrightError:
                    info("the info tooltip did not show; chat-info.png may lack it")
                page.screenshot(path=str(out_dir / "chat-info.png"))
            page_html = page.content()
            chat_id = page.url.rstrip("/").rsplit("/c/", 1)[-1] if "/c/" in page.url else None
        finally:
            browser.close()

    if sent_models != ["auto"]:
        raise CheckFailed(f"the UI sent chat requests for {sent_models}, expected one for 'auto'")
    if not answer["text"]:
        raise CheckFailed("the answer shown in the UI is empty")
    # Oldest first. With Open WebUI's native function calling (its default), the UI offers its built-in tools; when
    # the model calls one, Open WebUI sends the result back in a second request, so one turn can be several decisions.
    decisions = list(reversed(stack.new_auto_decisions(seen)))
    chosen = decisions[-1]["chosen"] if decisions else None

    # What the UI shows as the answering model; information, not pass/fail.
    info(
        f"router's choice for the UI's turn: {chosen!r} "
        f"({len(decisions)} routed request(s): {[d['chosen'] for d in decisions]}, GET /admin/decisions)"
    )
    info(f"UI message header (#response-message-model-name): {shown_name!r}")
    usage_keys = [
        line.split(":", 1)[0].strip() for line in usage.splitlines() if ":" in line and not line.startswith(" ")
    ]
    info(f"UI info popover (usage): {', '.join(usage_keys) or 'not shown'}")
    info(f"router's choice appears anywhere in the page: {bool(chosen) and chosen in page_html}")
    if chat_id:
        r = stack.http.get(f"{stack.webui}/api/v1/chats/{chat_id}", headers=stack.auth, timeout=HTTP_TIMEOUT_S)
        if r.ok:
            stored = r.json()["chat"]["history"]["messages"].get(answer["id"], {})
            tool_calls = [
                item.get("name") for item in stored.get("output") or [] if item.get("type") == "function_call"
            ]
            info(
                f"stored message (GET /api/v1/chats/{{id}}): model={stored.get('model')!r}, "
                f"selectedModelId={stored.get('selectedModelId')!r}, tool calls={tool_calls}"
            )
    return f"answer of {len(answer['text'])} characters for model 'auto'; screenshots in {out_dir}"


def run(name: str, check: Callable[[], str]) -> bool:
    """Runs one check and prints its PASS/FAIL line; returns whether it passed."""
    start = time.monotonic()
    try:
        reason, ok = check(), True
    except CheckFailed as e:
        reason, ok = str(e), False
    except Exception as e:  # an unexpected error is a failure of this check, not of the whole run
        reason, ok = f"{type(e).__name__}: {e}", False
    print(f"{'PASS' if ok else 'FAIL'}  {name} ({time.monotonic() - start:.1f}s): {reason}", flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", required=True, help="the router's base URL")
    parser.add_argument("--webui", required=True, help="Open WebUI's base URL")
    parser.add_argument("--pull-model", default="llama3.1:8b", help="a model of the simulator's registry to pull")
    parser.add_argument("--chromium", help="Chromium executable for the browser check (skipped without it)")
    parser.add_argument("--require-browser", action="store_true", help="a missing Chromium is a failure")
    parser.add_argument("--out", type=Path, default=Path("target/openwebui"), help="where screenshots go")
    args = parser.parse_args()

    stack = Stack(args.router, args.webui)
    results = [
        run("models", lambda: check_models(stack)),
        run("chat", lambda: check_chat(stack)),
        run("pull", lambda: check_pull(stack, args.pull_model)),
    ]
    if args.chromium:
        results.append(run("browser", lambda: check_browser(stack, args.chromium, args.out)))
    elif args.require_browser:
        print("FAIL  browser: no Chromium found and SY_REQUIRE_BROWSER=1", flush=True)
        results.append(False)
    else:
        print("SKIP  browser: no Chromium found (install Debian's chromium or set SY_CHROMIUM)", flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
