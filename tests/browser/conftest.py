"""Fixtures for the browser suite: a real hub in a subprocess and Debian's Chromium via Playwright.

Modules share one server unless they need their own (grab mode; a restart); tests open fresh
browser contexts so every page starts with empty sessionStorage, as a new visitor would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "demo1234"
TEST_SECRET = "browser-suite-secret-0123456789-abcdefgh"
REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: end-to-end tests in a real Chromium (Playwright)")


def _require_chromium() -> None:
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright (Python) is not installed in the venv"
    if missing:
        if os.environ.get("CHATSERVER_REQUIRE_SERVICES") == "1":
            pytest.fail(f"browser tests required but {missing}")
        pytest.skip(f"browser tests skipped: {missing}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HubServer:
    """One hub process; restart() keeps the port and the data dir (a crash and a comeback)."""

    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "chatserver",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "serve",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as res:
                    if res.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"hub not ready in {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# Most tests share one hub; chats stay open between them, so advisors get room for many, and
# an advisor whose page closed stops receiving new chats after 2 s instead of the usual 60.
SHARED_ENV = {"CHATSERVER_DEFAULT_CAPACITY": "50", "CHATSERVER_GRACE_PERIOD_S": "2"}


def _make_hub(tmp_path_factory: pytest.TempPathFactory, extra_env: dict[str, str]) -> HubServer:
    data_dir = tmp_path_factory.mktemp("hub")
    env = {**os.environ, "CHATSERVER_SECRET": TEST_SECRET, **extra_env}
    env.setdefault("CHATSERVER_LOG_LEVEL", "WARNING")
    server = HubServer(data_dir=data_dir, port=free_port(), env=env)
    server.start()
    return server


@pytest.fixture(scope="session")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    _require_chromium()
    server = _make_hub(tmp_path_factory, SHARED_ENV)
    yield server
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def hub_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., HubServer]]:
    """A hub of a module's own (its own settings, or one the module stops and restarts)."""
    _require_chromium()
    servers: list[HubServer] = []

    def make(**extra_env: str) -> HubServer:
        server = _make_hub(tmp_path_factory, {**SHARED_ENV, **extra_env})
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(shared_hub: HubServer) -> HubServer:
    return shared_hub


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Pages:
    """Opens pages in fresh contexts and records every JS dialog and page error they raise."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser = browser
        self.base = base
        self.contexts: list[Any] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    def open(
        self,
        path: str = "/",
        *,
        width: int = 1280,
        height: int = 800,
        before_load: Callable[[Any], None] | None = None,
    ) -> Any:
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, locale="zh-CN"
        )
        self.contexts.append(context)
        page = context.new_page()

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # A CSP violation (inline script or style) is reported only on the console.
        page.on(
            "console",
            lambda msg: (
                self.errors.append(msg.text) if "Content Security Policy" in msg.text else None
            ),
        )
        if before_load is not None:
            before_load(page)
        page.goto(self.base + path)
        return page

    def investor(self, before_load: Callable[[Any], None] | None = None) -> Any:
        page = self.open("/", width=390, height=780, before_load=before_load)
        page.wait_for_function(
            "() => sessionStorage.getItem('investor.conversation')", timeout=15000
        )
        return page

    def staff(self, path: str, username: str) -> Any:
        page = self.open(path)
        page.fill("#login-form input[name=username]", username)
        page.fill("#login-form input[name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#conn-dot.open", timeout=15000)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()

    @staticmethod
    def conversation_of(investor_page: Any) -> str:
        return str(investor_page.evaluate("() => sessionStorage.getItem('investor.conversation')"))

    @staticmethod
    def say(investor_page: Any, text: str) -> None:
        investor_page.fill("#input", text)
        investor_page.click("#send")

    @staticmethod
    def chat_pane(console_page: Any, conversation_id: str, timeout: float = 15000) -> Any:
        """The console's pane for a chat, made the active tab."""
        tab = console_page.locator(f'.tab[data-conversation="{conversation_id}"]')
        tab.wait_for(timeout=timeout)
        tab.click()
        pane = console_page.locator(f'.chat-pane[data-conversation="{conversation_id}"]')
        pane.wait_for(state="visible", timeout=timeout)
        return pane


@pytest.fixture
def pages(browser: Any, hub: HubServer) -> Iterator[Pages]:
    p = Pages(browser, hub.url)
    yield p
    p.close()
