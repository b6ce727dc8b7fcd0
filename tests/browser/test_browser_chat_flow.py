"""End-to-end in Chromium: bot → 转人工 → advisor reply, a compliance block seen by all three
pages, and XSS payloads shown as plain text on both sides."""

from __future__ import annotations

import re
from typing import Any

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

QUESTION = "开户需要什么材料"  # an account question: advisor1 serves the account group


def hand_off_to_advisor(pages: Any, advisor: Any) -> tuple[Any, str, Any]:
    investor = pages.investor()
    pages.say(investor, QUESTION)
    expect(investor.locator(".msg.role-bot").last).to_contain_text("身份证", timeout=15000)
    investor.click("#handoff")
    conversation_id = pages.conversation_of(investor)
    pane = pages.chat_pane(advisor, conversation_id)
    expect(investor.locator("#chat-status")).to_contain_text("王顾问", timeout=15000)
    return investor, conversation_id, pane


def test_bot_answers_then_handoff_and_the_advisor_reply_reaches_the_investor(pages: Any) -> None:
    advisor = pages.staff("/console", "advisor1")
    investor, _, pane = hand_off_to_advisor(pages, advisor)

    # The advisor gets the whole transcript, bot part included, and KB suggestions.
    expect(pane.locator(".msg.role-investor").first).to_contain_text(QUESTION)
    expect(pane.locator(".msg.role-bot").first).to_be_visible()
    suggestion = advisor.locator("#suggestions .suggestion").first
    expect(suggestion).to_be_visible(timeout=15000)
    suggestion.click()
    reply_box = pane.locator(".reply-input")
    assert reply_box.input_value().strip() != "", "clicking a suggestion inserts its answer"

    reply_box.fill("您好，请准备身份证和本人银行卡，我来一步步带您办理。")
    reply_box.press("Enter")
    expect(investor.locator(".msg.role-advisor")).to_contain_text(
        "我来一步步带您办理", timeout=15000
    )
    expect(pane.locator('.msg.mine[data-delivery="delivered"]')).to_contain_text(
        "我来一步步带您办理"
    )

    # And back: the investor's next message reaches the advisor live.
    pages.say(investor, "好的，谢谢")
    expect(pane.locator(".msg.role-investor").last).to_have_text(
        re.compile("好的，谢谢"), timeout=15000
    )
    expect(investor.locator('.msg.mine[data-delivery="delivered"]').last).to_contain_text(
        "好的，谢谢"
    )
    assert pages.errors == []


def test_blocked_reply_is_not_delivered_and_is_explained_to_advisor_and_supervisor(
    pages: Any,
) -> None:
    supervisor = pages.staff("/supervisor", "supervisor1")
    advisor = pages.staff("/console", "advisor1")
    investor, conversation_id, pane = hand_off_to_advisor(pages, advisor)

    banned = "这个产品保证收益，稳赚不赔"
    reply_box = pane.locator(".reply-input")
    reply_box.fill(banned)
    reply_box.press("Enter")

    notice = pane.locator(".block-notice")
    expect(notice).to_be_visible(timeout=15000)
    expect(notice).to_contain_text(re.compile(r"[A-Z]+-\d+"))  # which rule
    marked = notice.locator(".quoted mark.hit").all_inner_texts()
    assert marked and all(word in banned for word in marked)
    assert any("保证收益" in w or "稳赚" in w for w in marked), marked
    assert reply_box.input_value() == banned, "the text stays in the box to rephrase"

    # The supervisor desk shows the alert live, with the span highlighted.
    alert = supervisor.locator(f'.alert[data-conversation="{conversation_id}"]').first
    expect(alert).to_be_visible(timeout=15000)
    expect(alert.locator("mark.hit").first).to_have_text(re.compile("保证收益|稳赚"))

    # A compliant follow-up is delivered; the blocked text never reaches the investor.
    reply_box.fill("请问您还有其他问题吗？我可以为您介绍开户流程。")
    reply_box.press("Enter")
    expect(investor.locator(".msg.role-advisor").last).to_contain_text(
        "介绍开户流程", timeout=15000
    )
    assert banned not in investor.locator("#messages").inner_text()
    assert "保证收益" not in investor.locator("#messages").inner_text()
    assert pages.errors == []


XSS = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>x"]


def test_xss_payloads_render_as_text_and_run_nothing(pages: Any) -> None:
    advisor = pages.staff("/console", "advisor1")
    investor, _, pane = hand_off_to_advisor(pages, advisor)
    for payload in XSS:
        pages.say(investor, payload)
    for payload in XSS:
        expect(pane.locator(".msg.role-investor .text", has_text=payload)).to_have_count(
            1, timeout=15000
        )
    reply_box = pane.locator(".reply-input")
    reply_box.fill('"><svg onload=alert(3)>')
    reply_box.press("Enter")
    expect(
        investor.locator(".msg.role-advisor .text", has_text='"><svg onload=alert(3)>')
    ).to_have_count(1, timeout=15000)
    for payload in XSS:
        expect(investor.locator(".msg.role-investor .text", has_text=payload)).to_have_count(1)
    investor.wait_for_timeout(500)
    for page in (investor, pane):
        assert (
            page.locator("#messages img, .messages img, .messages script, .messages svg").count()
            == 0
        )
    assert pages.dialogs == []
    assert pages.errors == []


def staff_get(base: str, username: str, path: str) -> Any:
    import json
    import urllib.request

    body = json.dumps({"username": username, "password": "demo1234"}).encode()
    req = urllib.request.Request(f"{base}/api/login", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as res:
        token = json.load(res)["token"]
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res)


def test_advisor_closes_and_the_investor_rates_the_chat(pages: Any, hub: Any) -> None:
    advisor = pages.staff("/console", "advisor1")
    investor, conversation_id, pane = hand_off_to_advisor(pages, advisor)
    pane.locator(".close-chat").click()
    expect(pane.locator(".reply-input")).to_be_disabled(timeout=15000)
    expect(investor.locator("#rating")).to_be_visible(timeout=15000)
    expect(investor.locator("#input")).to_be_disabled()
    investor.locator('#stars .star[data-score="4"]').click()
    expect(investor.locator("#stars .star.on")).to_have_count(4)
    investor.fill("#rate-comment", "回答很清楚")
    investor.click("#rate-send")
    expect(investor.locator("#rate-done")).to_be_visible(timeout=15000)
    rating = staff_get(hub.url, "supervisor1", f"/api/conversations/{conversation_id}")["rating"]
    assert rating is not None and rating["score"] == 4, rating
    assert pages.errors == []


def test_investor_leaves_a_message(pages: Any, hub: Any) -> None:
    investor = pages.investor()
    investor.click("#leave-open")
    expect(investor.locator("#leave")).to_be_visible()
    investor.fill("#leave-text", "想咨询两融开通，请回电")
    investor.fill("#leave-contact", "13800000000")
    investor.click("#leave-send")
    expect(investor.locator("#leave-result")).to_have_text(
        "留言已提交，我们会尽快联系您。", timeout=15000
    )
    conversation_id = pages.conversation_of(investor)
    stored = staff_get(hub.url, "supervisor1", f"/api/conversations/{conversation_id}")["messages"]
    left = [m for m in stored if m["kind"] == "leave_message"]
    assert len(left) == 1 and "想咨询两融开通" in left[0]["text"], left
    assert pages.errors == []


def test_transfer_to_a_group_moves_the_chat_with_its_note(pages: Any) -> None:
    consoles = {
        "advisor1": pages.staff("/console", "advisor1"),
        "advisor3": pages.staff("/console", "advisor3"),
    }
    investor = pages.investor()
    pages.say(investor, QUESTION)  # the account group: both advisors serve it
    expect(investor.locator(".msg.role-bot").last).to_contain_text("身份证", timeout=15000)
    investor.click("#handoff")
    conversation_id = pages.conversation_of(investor)
    tab = f'.tab[data-conversation="{conversation_id}"]'
    for _ in range(150):
        owners = [name for name, page in consoles.items() if page.locator(tab).count()]
        if owners:
            break
        investor.wait_for_timeout(100)
    assert len(owners) == 1, owners
    source = owners[0]
    # A group only the other advisor serves: trading is advisor1's, complaints advisor3's.
    target, group = ("advisor3", "complaints") if source == "advisor1" else ("advisor1", "trading")
    pane = pages.chat_pane(consoles[source], conversation_id)
    pane.locator(".transfer-toggle").click()
    pane.locator(".transfer-to").fill(group)
    pane.locator(".transfer-note").fill("客户想投诉佣金，请跟进")
    pane.locator(".transfer-form button[type=submit]").click()
    expect(pane.locator(".reply-input")).to_be_disabled(timeout=15000)

    new_pane = pages.chat_pane(consoles[target], conversation_id)
    expect(new_pane.locator(".msg.kind-note")).to_contain_text("客户想投诉佣金", timeout=15000)
    expect(new_pane.locator(".msg.role-investor").first).to_contain_text(QUESTION)
    new_name = "陈顾问" if target == "advisor3" else "王顾问"
    expect(investor.locator("#chat-status")).to_contain_text(new_name, timeout=15000)
    assert "客户想投诉佣金" not in investor.locator("#messages").inner_text()
    assert pages.errors == []


def test_alert_decisions_sync_across_desks_and_the_conversation_view_is_live(
    pages: Any,
) -> None:
    desk_a = pages.staff("/supervisor", "supervisor1")
    desk_b = pages.staff("/supervisor", "supervisor1")
    advisor = pages.staff("/console", "advisor1")
    investor, conversation_id, pane = hand_off_to_advisor(pages, advisor)
    reply_box = pane.locator(".reply-input")
    reply_box.fill("跟着我买，这只股票下周必涨")
    reply_box.press("Enter")
    expect(pane.locator(".block-notice")).to_be_visible(timeout=15000)

    selector = f'.alert[data-conversation="{conversation_id}"]'
    alert_a = desk_a.locator(selector).first
    expect(alert_a).to_be_visible(timeout=15000)
    alert_id = alert_a.get_attribute("data-alert")
    alert_b = desk_b.locator(f'.alert[data-alert="{alert_id}"]')
    expect(alert_b).to_be_visible(timeout=15000)

    alert_a.locator("input.notes").fill("已提醒顾问")
    alert_a.locator("button.ack").click()
    expect(alert_b).to_have_class(re.compile("state-acknowledged"), timeout=15000)
    alert_a = desk_a.locator(f'.alert[data-alert="{alert_id}"]')
    alert_a.locator("select.disposition").select_option("coached")
    alert_a.locator("button.resolve").click()
    expect(alert_b).to_have_class(re.compile("state-resolved"), timeout=15000)
    expect(alert_b).to_contain_text("已辅导")

    # 查看会话: the read-only view shows the transcript and follows it live (watch).
    alert_b.locator(".open-conv").click()
    view = desk_b.locator("#conv-messages")
    expect(view.locator(".msg.role-investor").first).to_contain_text(QUESTION, timeout=15000)
    pages.say(investor, "请问这周能办好吗")
    expect(view.locator(".msg.role-investor").last).to_contain_text("这周能办好吗", timeout=15000)
    assert pages.errors == []


def test_queued_investor_sees_position_and_eta(pages: Any) -> None:
    investor = pages.investor()
    pages.say(investor, "两融开通条件是什么")  # margin: only advisor2 serves it, never online here
    expect(investor.locator(".msg.role-bot")).to_have_count(2, timeout=15000)
    investor.click("#handoff")
    expect(investor.locator("#chat-status")).to_have_text("正在为您转接人工顾问", timeout=15000)
    info = investor.locator("#queue-info")
    expect(info).to_contain_text(re.compile(r"您前面还有 \d+ 位，预计等待"), timeout=15000)
    expect(investor.locator("#handoff")).to_be_disabled()
    assert pages.errors == []
