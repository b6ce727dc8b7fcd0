"""In Chromium: the console's one-click learning loop (an advisor reply → a new KB entry via
POST /api/kb/learn), and a rated closed chat that does not ask for a rating again after a reload."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

QUESTION = "开户需要什么材料"


def staff_get(base: str, username: str, path: str) -> Any:
    body = json.dumps({"username": username, "password": "demo1234"}).encode()
    req = urllib.request.Request(f"{base}/api/login", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as res:
        token = json.load(res)["token"]
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)


def hand_off_to_advisor(pages: Any, advisor: Any, question: str = QUESTION) -> tuple[Any, str, Any]:
    investor = pages.investor()
    pages.say(investor, question)
    expect(investor.locator(".msg.role-bot").last).to_contain_text("身份证", timeout=15000)
    investor.click("#handoff")
    conversation_id = pages.conversation_of(investor)
    pane = pages.chat_pane(advisor, conversation_id)
    expect(investor.locator("#chat-status")).to_contain_text("王顾问", timeout=15000)
    return investor, conversation_id, pane


def test_an_advisor_reply_becomes_a_kb_entry_in_one_action(pages: Any, hub: Any) -> None:
    advisor = pages.staff("/console", "advisor1")
    question = "开户需要什么材料，港澳居民可以开吗"
    investor, _, pane = hand_off_to_advisor(pages, advisor, question)
    reply = "港澳居民可以开户：请携带港澳居民来往内地通行证和内地银行卡到营业部办理。"
    pane.locator(".reply-input").fill(reply)
    pane.locator(".reply-input").press("Enter")
    mine = pane.locator('.msg.mine[data-delivery="delivered"]', has_text="港澳居民来往内地通行证")
    expect(mine).to_have_count(1, timeout=15000)

    mine.locator("button.learn").click()
    form = mine.locator(".learn-form")
    expect(form.locator(".learn-question")).to_have_value(question)  # the question it answers
    # An empty question is refused by the hub: the error is shown and nothing is stored.
    form.locator(".learn-question").fill("")
    form.locator("button[type=submit]").click()
    result = form.locator(".learn-result")
    expect(result).to_have_class("learn-result note error", timeout=15000)
    expect(result).to_contain_text("加入失败")

    form.locator(".learn-question").fill(question)
    form.locator(".learn-category").select_option("account")
    form.locator("button[type=submit]").click()
    expect(result).to_contain_text("已加入知识库：learned-", timeout=15000)
    entry_id = result.get_attribute("data-entry")
    assert entry_id and entry_id in result.inner_text()

    entries = staff_get(hub.url, "supervisor1", "/api/kb")["entries"]
    learned = [e for e in entries if e["id"] == entry_id]
    assert len(learned) == 1, entry_id
    assert learned[0]["question"] == question
    assert learned[0]["answer"] == reply
    assert learned[0]["category"] == "account"
    # Only what the advisor may say is offered: the investor's and the bot's messages are not.
    assert pane.locator(".msg.role-investor button.learn, .msg.role-bot button.learn").count() == 0
    assert pages.errors == []


def test_a_rated_closed_chat_does_not_ask_again_after_a_reload(pages: Any, hub: Any) -> None:
    advisor = pages.staff("/console", "advisor1")
    investor, conversation_id, pane = hand_off_to_advisor(pages, advisor)
    pane.locator(".close-chat").click()
    expect(investor.locator("#rate-prompt")).to_be_visible(timeout=15000)
    investor.locator('#stars .star[data-score="5"]').click()
    investor.click("#rate-send")
    expect(investor.locator("#rate-done")).to_be_visible(timeout=15000)
    expect(investor.locator("#rate-prompt")).to_be_hidden()

    investor.reload()
    expect(investor.locator("#chat-status")).to_have_text("会话已结束", timeout=15000)
    expect(investor.locator("#rate-prompt")).to_be_hidden()
    expect(investor.locator("#rate-send")).to_be_hidden()
    expect(investor.locator("#new-chat")).to_be_visible()  # a new chat can still be started
    assert (
        staff_get(hub.url, "supervisor1", f"/api/conversations/{conversation_id}")["rating"][
            "score"
        ]
        == 5
    )

    # Rated elsewhere (this tab's memory lost): the hub's invalid_state reads as "already rated".
    investor.evaluate(
        "() => sessionStorage.removeItem('investor.rated.' + sessionStorage.getItem('investor.conversation'))"
    )
    investor.reload()
    expect(investor.locator("#rate-prompt")).to_be_visible(timeout=15000)
    investor.locator('#stars .star[data-score="2"]').click()
    investor.click("#rate-send")
    expect(investor.locator("#rate-done")).to_be_visible(timeout=15000)
    expect(investor.locator("#rate-prompt")).to_be_hidden()
    expect(investor.locator("#conn-banner")).to_be_hidden()  # no error shown
    assert (
        staff_get(hub.url, "supervisor1", f"/api/conversations/{conversation_id}")["rating"][
            "score"
        ]
        == 5
    )
    assert pages.errors == []
