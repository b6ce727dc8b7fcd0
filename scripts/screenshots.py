"""Regenerate docs/screenshots/*.png: each web page in a realistic state, driven end to end.

Starts its own hub (temporary data dir, free port), plays a short conversation through the real
pages in Debian's Chromium, and shoots the investor chat (phone size), the advisor console (an
active chat, KB suggestions and a blocked-message notice) and the supervisor desk.
Run: .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
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
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 780}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_hub(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "chatserver", "--port", str(port), "--data-dir", data_dir, "serve"]
    env = {**os.environ, "CHATSERVER_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the hub exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as res:
                if res.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the hub did not become ready in 60 s")


def staff_page(browser: Any, base: str, path: str, username: str) -> Any:
    page = browser.new_context(viewport=DESKTOP, locale="zh-CN").new_page()
    page.goto(base + path)
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#conn-dot.open", timeout=15000)
    return page


def seed_quick_replies(base: str) -> None:
    """Two templates of advisor1's own, as an advisor would save them from the console."""
    login = json.dumps({"username": "advisor1", "password": PASSWORD}).encode()
    req = urllib.request.Request(f"{base}/api/login", data=login, method="POST")
    with urllib.request.urlopen(req, timeout=10) as res:
        token = json.load(res)["token"]
    templates = {
        "greet": ("问候", "{customer_name}您好，我是{advisor_name}，很高兴为您服务。"),
        "risk": ("风险提示", "市场有风险，投资需谨慎。以上内容仅供参考，不构成投资建议。"),
    }
    for key, (title, text) in templates.items():
        body = json.dumps({"title": title, "text": text}).encode()
        req = urllib.request.Request(
            f"{base}/api/quick-replies/{key}",
            data=body,
            method="PUT",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10).close()


def say(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.click("#send")


def shoot(browser: Any, base: str, out: Path) -> None:
    supervisor = staff_page(browser, base, "/supervisor", "supervisor1")
    console = staff_page(browser, base, "/console", "advisor1")

    seed_quick_replies(base)
    investor = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True).new_page()
    investor.goto(base + "/")
    investor.wait_for_function("() => sessionStorage.getItem('investor.conversation')")
    # Sign in as a known customer so the console shows a real profile.
    investor.click("#login-link")
    investor.fill("#login-form input[name=username]", "investor1")
    investor.fill("#login-form input[name=password]", PASSWORD)
    investor.click("#login-form button[type=submit]")
    investor.wait_for_selector("#login-link", state="hidden", timeout=15000)
    investor.wait_for_function("() => sessionStorage.getItem('investor.conversation')")
    say(investor, "两融")
    expect(investor.locator(".choices").last).to_be_visible(timeout=15000)
    # The last question decides the group: an account question goes to advisor1.
    say(investor, "开户需要什么材料")
    expect(investor.locator(".msg.role-bot")).to_have_count(3, timeout=15000)
    investor.click("#handoff")
    conversation_id = investor.evaluate("() => sessionStorage.getItem('investor.conversation')")

    tab = console.locator(f'.tab[data-conversation="{conversation_id}"]')
    tab.wait_for(timeout=20000)
    tab.click()
    pane = console.locator(f'.chat-pane[data-conversation="{conversation_id}"]')
    reply = pane.locator(".reply-input")
    reply.fill("您好，我是王顾问。开户请准备身份证和本人银行卡，两融需要另外评估。")
    reply.press("Enter")
    expect(investor.locator(".msg.role-advisor")).to_have_count(1, timeout=15000)
    say(investor, "开户要多久能办好？")
    expect(console.locator("#suggestions .suggestion").first).to_be_visible(timeout=15000)
    console.wait_for_timeout(500)
    reply.fill("我这有内幕消息，这只股票明天肯定涨停")
    reply.press("Enter")
    expect(pane.locator(".block-notice")).to_be_visible(timeout=15000)
    reply.fill("这个产品保证收益，稳赚不赔，您放心买")
    reply.press("Enter")
    expect(pane.locator(".block-notice")).to_be_visible(timeout=15000)

    # A second visitor waits in a queue nobody online serves, so the board has a queue.
    waiting = browser.new_context(viewport=PHONE, locale="zh-CN").new_page()
    waiting.goto(base + "/")
    waiting.wait_for_function("() => sessionStorage.getItem('investor.conversation')")
    say(waiting, "基金定投怎么设置")
    expect(waiting.locator(".msg.role-bot")).to_have_count(2, timeout=15000)
    waiting.click("#handoff")

    console.keyboard.press("Shift+Tab")  # typing indicator on the investor side
    reply.press("End")
    reply.type("。")
    investor.wait_for_timeout(300)
    investor.screenshot(path=str(out / "investor-chat.png"))
    console.screenshot(path=str(out / "advisor-console.png"))

    expect(supervisor.locator(".alert").first).to_be_visible(timeout=15000)
    supervisor.wait_for_timeout(7000)  # a few board samples for the charts
    supervisor.screenshot(path=str(out / "supervisor-desk.png"))

    host = browser.new_context(viewport=DESKTOP, locale="zh-CN").new_page()
    host.goto(base + "/static/widget.js")  # same origin, then replaced by a "firm's page"
    host.set_content(
        '<html><head><meta charset="utf-8"></head><body><h1>某某证券 官方网站</h1>'
        f'<p>行情 · 开户 · 理财</p><script src="{base}/static/widget.js" defer></script></body></html>'
    )
    host.click("button.chat-widget-button")
    frame = host.frame_locator("iframe.chat-widget-frame")
    expect(frame.locator(".msg.role-bot").first).to_be_visible(timeout=15000)
    host.screenshot(path=str(out / "widget.png"))

    supervisor.click('#desk-nav button[data-view="rules"]')
    supervisor.locator("#rule-list .item").first.click()
    supervisor.fill("#check-text", "跟着我买，这只股票下周必涨，保本保息")
    supervisor.click("#check-form button[type=submit]")
    expect(supervisor.locator("#check-result .pill")).to_be_visible(timeout=10000)
    supervisor.screenshot(path=str(out / "supervisor-rules.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as data_dir:
        port = free_port()
        hub = start_hub(data_dir, port)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    shoot(browser, f"http://127.0.0.1:{port}", args.out)
                finally:
                    browser.close()
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(timeout=15)
    for png in sorted(args.out.glob("*.png")):
        print(
            f"{png.relative_to(REPO) if png.is_relative_to(REPO) else png}  {png.stat().st_size} bytes"
        )


if __name__ == "__main__":
    main()
