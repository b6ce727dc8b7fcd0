"""The embeddable widget on a third-party page, the zh-CN/English switch, and the pages' CSP."""

from __future__ import annotations

from typing import Any

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser


def test_widget_opens_the_chat_in_an_iframe(pages: Any, hub: Any) -> None:
    host = pages.open("/static/widget.js")  # any page of ours, then replaced by a "firm's page"
    host.set_content(
        f'<html><body><h1>某证券官网</h1><script src="{hub.url}/static/widget.js" defer></script></body></html>'
    )
    button = host.locator("button.chat-widget-button")
    expect(button).to_have_text("在线咨询", timeout=10000)
    button.click()
    frame_el = host.locator("iframe.chat-widget-frame")
    expect(frame_el).to_have_attribute("src", f"{hub.url}/?embed=1")
    chat = host.frame_locator("iframe.chat-widget-frame")
    expect(chat.locator("body.embed")).to_have_count(1, timeout=10000)
    expect(chat.locator(".msg.role-bot").first).to_be_visible(timeout=15000)
    button.click()
    expect(frame_el).to_be_hidden()
    assert pages.errors == []


def test_language_switch_changes_the_interface_and_is_remembered(pages: Any) -> None:
    investor = pages.investor()
    expect(investor.locator("#send")).to_have_text("发送")
    expect(investor.locator("#handoff")).to_have_text("转人工")
    investor.select_option("select.lang-switch", "en")
    expect(investor.locator("#send")).to_have_text("Send")
    expect(investor.locator("#handoff")).to_have_text("Talk to a person")
    assert investor.locator("#input").get_attribute("placeholder") == "Type your question"
    expect(investor.locator("#chat-status")).to_contain_text("assistant")
    investor.reload()
    expect(investor.locator("#send")).to_have_text("Send")
    assert investor.evaluate("() => document.documentElement.lang") == "en"
    assert pages.errors == []


def test_pages_load_under_the_csp_with_no_violation(pages: Any) -> None:
    for path in ("/", "/console", "/supervisor"):
        page = pages.open(path)
        page.wait_for_load_state("networkidle")
        csp = page.evaluate(
            "() => fetch(location.href).then(r => r.headers.get('content-security-policy'))"
        )
        assert "script-src 'self'" in csp
    pages.staff("/console", "advisor2")
    pages.staff("/supervisor", "supervisor1")
    assert pages.errors == []
