"""The dashboard (`GET /ui`) in a real browser: headless Chromium, driven through playwright, against the router in
front of the simulator. The GPU bars match `/admin/vram`, a pin clicked on the page shows in `/admin/vram`, the
explain form lists the candidates `/admin/explain` gives, and no prompt text reaches the page. With
`SY_SCREENSHOTS=DIR` each view is saved there (the images in `docs/images/` come from this test).

Chromium is `$SY_CHROMIUM`, else `chromium` on PATH (Debian's package; the test command installs it). Without one
the test is skipped, loudly, unless `SY_REQUIRE_BROWSER=1`.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable

import httpx
import pytest


ADMIN_KEY = "dashboard-test-key"
DEADLINE_S = 15.0


def chromium_path() -> str | None:
    return os.environ.get("SY_CHROMIUM") or shutil.which("chromium")


@pytest.fixture
def keyed_router(start_router: Callable[..., str]) -> str:
    """The router with an admin key, in front of a fresh simulator."""
    return start_router(server_admin_key=ADMIN_KEY, vram_poll_interval_ms="200")


def admin(url: str, method: str, path: str, body: dict | None = None) -> dict:
    r = httpx.request(method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_the_dashboard_shows_the_gpu_pins_from_the_page_and_explains(keyed_router: str) -> None:
    exe = chromium_path()
    if exe is None:
        if os.environ.get("SY_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium (set SY_CHROMIUM or install Debian's chromium)")
        pytest.skip("NO CHROMIUM: the dashboard's browser test did not run (install Debian's chromium)")
    from playwright.sync_api import sync_playwright

    url = keyed_router
    admin(url, "POST", "/admin/vram/load", {"model": "qwen2.5-coder:7b"})
    secret = "zebra-umbrella-4711"
    chat = {"model": "auto", "stream": False, "messages": [{"role": "user", "content": f"Say {secret} twice."}]}
    httpx.post(f"{url}/api/chat", json=chat, timeout=30).raise_for_status()
    shots = os.environ.get("SY_SCREENSHOTS")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/ui?key={ADMIN_KEY}")
            assert page.url.endswith("/ui"), "the key leaves the address bar"

            # GPU: the bar carries /admin/vram's figures, one segment per loaded model.
            def bar_matches() -> bool:
                vram = admin(url, "GET", "/admin/vram")
                bar = page.query_selector("#gpu-0")
                if bar is None:
                    return False
                gpu = vram["gpus"][0]
                segments = {s.get_attribute("data-model") for s in page.query_selector_all("#gpu-0 .gpu-model")}
                return (
                    bar.get_attribute("data-used-bytes") == str(gpu["used_bytes"])
                    and bar.get_attribute("data-total-bytes") == str(gpu["total_bytes"])
                    and segments == {m["name"] for m in vram["models"]}
                )

            eventually(bar_matches, "the GPU bar to match /admin/vram")
            if shots:
                page.screenshot(path=f"{shots}/dashboard-gpu.png")

            # A pin clicked on the page is a pin in /admin/vram.
            page.click('tr[data-model="llama3.2:3b"] button[data-action="pin"]')
            eventually(
                lambda: any(m["name"] == "llama3.2:3b" and m["pinned"] for m in admin(url, "GET", "/admin/vram")["models"]),
                "the pin to reach /admin/vram",
            )
            eventually(
                lambda: page.query_selector('#gpu-0 .gpu-model[data-model="llama3.2:3b"][data-pinned="true"]') is not None,
                "the page to show the pin",
            )
            if shots:
                page.locator("#models").screenshot(path=f"{shots}/dashboard-models.png")

            # Explain: one row per candidate /admin/explain gives.
            prompt = "Write a Rust function that parses an integer."
            expected = {c["model"] for c in admin(url, "POST", "/admin/explain", {"prompt": prompt})["scoring"]["candidates"]}
            page.fill("#explain-prompt", prompt)
            page.click("#explain-form [type=submit]")
            eventually(
                lambda: {r.get_attribute("data-model") for r in page.query_selector_all("#explain-results tr[data-model]")}
                == expected,
                "the explain form to list every candidate",
            )
            if shots:
                page.locator("#explain").screenshot(path=f"{shots}/dashboard-explain.png")

            # Decisions are shown, prompts never.
            eventually(lambda: page.query_selector("#decisions [data-request-id]") is not None, "a decision row")
            if shots:
                page.locator("#decisions").screenshot(path=f"{shots}/dashboard-decisions.png")
                phone = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
                phone.goto(f"{url}/ui?key={ADMIN_KEY}")
                eventually(lambda: phone.query_selector("#gpu-0") is not None, "the phone view")
                phone.screenshot(path=f"{shots}/dashboard-phone-dark.png")
            assert secret not in page.content(), "prompt text reached the page"
            assert not errors, errors
        finally:
            browser.close()
