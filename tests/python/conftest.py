"""Shared fixtures for the Python client tests.

The tests drive Switchyard's servers with the official `ollama` and `openai` Python libraries, unchanged. Nothing
is built here: the binaries are taken from `$SY_SIM_BIN` / `$SY_ROUTER_BIN`, else `$CARGO_TARGET_DIR/debug/`, else
`target/debug/` of the repository (run `cargo build --workspace --bins` first).

Fixtures:
- `start_sim(*args)`: starts a simulator on a free port (time scale 0 unless `args` say otherwise) and returns its
  base URL; every simulator started is stopped when the test ends.
- `sim_url`: the base URL of a fresh simulator with the default options.
- `start_router(**settings)`: starts `switchyard serve` in front of a fresh simulator, with its store in a temporary
  directory and `SWITCHYARD_*` settings from the keyword arguments, and returns its base URL.
- `router_url`, `cached_router_url`: such a router with the default settings, and with the response cache on.
- `any_router_url`: parametrized: `router_url` (`box`), then a front over two such routers (`fleet`), so that a test
  runs against both and shows a client cannot tell them apart.
- `start_front(nodes)`: a fleet: `nodes` routers as above (each in front of its own simulator), and a front router
  over them (`ollama.enabled = false`, one `kind = "switchyard"` backend per node); returns the front's base URL.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ANNOUNCEMENT = "switchyard-sim listening on "
START_TIMEOUT_S = 30.0


def binary(env_var: str, name: str) -> Path:
    """The path of a built binary: `$env_var`, else the cargo target directory's debug build."""
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        path = target / "debug" / name
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `cargo build` first or set ${env_var}")
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any SWITCHYARD_* variable (the router refuses unknown ones), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env.update(extra or {})
    return env


def start_server(command: list[str], announcement: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Starts a server that prints `<announcement><url>` as its first stdout line; returns it and the URL."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env(env))
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=START_TIMEOUT_S)
    except queue.Empty:
        stop_server(proc)
        pytest.fail(f"{command[0]} did not announce its address within {START_TIMEOUT_S} s")
    if not first.startswith(announcement):
        stop_server(proc)
        pytest.fail(f"{command[0]} printed {first!r} instead of its address")
    return proc, first[len(announcement):].strip()


def stop_server(proc: subprocess.Popen) -> None:
    """Stops a server started by `start_server`: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def start_sim() -> Iterator[Callable[..., str]]:
    """Starts simulators on demand; stops them all at the end of the test."""
    started: list[subprocess.Popen] = []
    sim = binary("SY_SIM_BIN", "switchyard-sim")

    def start(*args: str) -> str:
        extra = list(args)
        if "--time-scale" not in extra:
            extra += ["--time-scale", "0"]
        proc, url = start_server([str(sim), "--listen", "127.0.0.1:0", *extra], ANNOUNCEMENT)
        started.append(proc)
        return url

    yield start
    for proc in started:
        stop_server(proc)


@pytest.fixture
def sim_url(start_sim: Callable[..., str]) -> str:
    """A fresh simulator with the default options (one 24 GiB GPU, the built-in fleet, time scale 0)."""
    return start_sim()


ROUTER_ANNOUNCEMENT = "switchyard listening on "


@pytest.fixture
def start_router(start_sim: Callable[..., str], tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts `switchyard serve` on a free port in front of a fresh simulator, its SQLite store under `tmp_path`, with
    `SWITCHYARD_*` settings from the keyword arguments (`cache_enabled="true"` sets `SWITCHYARD_CACHE_ENABLED`);
    returns its base URL. Every router started is stopped when the test ends."""
    started: list[subprocess.Popen] = []
    router = binary("SY_ROUTER_BIN", "switchyard")

    def start(**settings: str) -> str:
        env = {
            "SWITCHYARD_OLLAMA_URL": start_sim(),
            "SWITCHYARD_VRAM_PROBE": "sim",
            "SWITCHYARD_DATABASE_URL": f"sqlite://{tmp_path / f'switchyard-{len(started)}.db'}",
            "RUST_LOG": "warn",
        }
        env.update({f"SWITCHYARD_{k.upper()}": v for k, v in settings.items()})
        proc, url = start_server([str(router), "serve", "--listen", "127.0.0.1:0"], ROUTER_ANNOUNCEMENT, env)
        started.append(proc)
        return url

    yield start
    for proc in started:
        stop_server(proc)


@pytest.fixture
def router_url(start_router: Callable[..., str]) -> str:
    """`switchyard serve` in front of a fresh simulator, with the default settings."""
    return start_router()


@pytest.fixture
def cached_router_url(start_router: Callable[..., str]) -> str:
    """`router_url` with the response cache on."""
    return start_router(cache_enabled="true")


@pytest.fixture
def start_front(start_router: Callable[..., str], tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Starts a fleet on demand: `nodes` routers with their simulators, and a front over them; returns its URL."""
    started: list[subprocess.Popen] = []
    router = binary("SY_ROUTER_BIN", "switchyard")

    def start(nodes: int) -> str:
        lines = ["[ollama]", "enabled = false", ""]
        for i in range(nodes):
            lines += ["[[backends]]", f'name = "node-{i}"', 'kind = "switchyard"', f'url = "{start_router()}"',
                      "poll_interval_ms = 100", ""]
        config = tmp_path / f"front-{len(started)}.toml"
        config.write_text("\n".join(lines))
        env = {"SWITCHYARD_DATABASE_URL": f"sqlite://{tmp_path / f'front-{len(started)}.db'}", "RUST_LOG": "warn"}
        command = [str(router), "serve", "--listen", "127.0.0.1:0", "--config", str(config)]
        proc, url = start_server(command, ROUTER_ANNOUNCEMENT, env)
        started.append(proc)
        return url

    yield start
    for proc in started:
        stop_server(proc)


@pytest.fixture(params=["box", "fleet"])
def any_router_url(request: pytest.FixtureRequest) -> str:
    """One router beside its simulator (`box`), or a fleet front over two of them (`fleet`)."""
    if request.param == "box":
        return request.getfixturevalue("start_router")()
    return request.getfixturevalue("start_front")(2)
