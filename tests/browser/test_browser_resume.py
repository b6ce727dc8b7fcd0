"""The investor page survives the hub going away (process stopped and restarted on the same
port and data dir): it reconnects, resumes from its last seq, re-sends what was not acked with
the same cid, and shows every message exactly once, in seq order."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(hub_factory: Any) -> Any:
    # This module stops and restarts its hub, so it gets one of its own.
    return hub_factory()


def server_transcript(base: str, token: str, conversation_id: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(
        f"{base}/api/conversations/{conversation_id}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return list(json.load(res)["messages"])


def test_investor_page_resumes_after_hub_restart_without_loss_or_duplicates(
    pages: Any, hub: Any
) -> None:
    investor = pages.investor()
    before = ["开户需要什么材料", "佣金怎么收取"]
    for i, text in enumerate(before):
        pages.say(investor, text)
        expect(investor.locator('.msg.mine[data-delivery="delivered"]')).to_have_count(
            i + 1, timeout=15000
        )
    bots_before = 1 + len(before)  # the greeting, then one answer per question
    expect(investor.locator(".msg.role-bot")).to_have_count(bots_before, timeout=15000)

    hub.stop()
    expect(investor.locator("#conn-banner")).to_be_visible(timeout=15000)
    during = "银证转账怎么操作"
    pages.say(investor, during)  # not acked: must go out again, once, when the hub is back
    expect(investor.locator('.msg.mine[data-delivery="sending"]')).to_have_count(1)

    hub.start()
    expect(investor.locator("#conn-banner")).to_be_hidden(timeout=45000)
    expect(investor.locator('.msg.mine[data-delivery="sending"]')).to_have_count(0, timeout=15000)
    after = "两融开通条件是什么"
    pages.say(investor, after)
    expect(investor.locator('.msg.mine[data-delivery="delivered"]')).to_have_count(4, timeout=15000)
    # Every question gets its bot answer, the one sent while offline included.
    expect(investor.locator(".msg.role-bot")).to_have_count(bots_before + 2, timeout=15000)

    token = investor.evaluate("() => sessionStorage.getItem('investor.chat.token')")
    conversation_id = pages.conversation_of(investor)
    stored = server_transcript(hub.url, token, conversation_id)
    shown_ids = investor.eval_on_selector_all(
        "#messages li", "els => els.map(e => e.dataset.id || null)"
    )
    shown_seqs = investor.eval_on_selector_all(
        "#messages li", "els => els.map(e => Number(e.dataset.seq))"
    )
    assert shown_ids == [m["id"] for m in sorted(stored, key=lambda m: m["seq"])], (
        "all shown once, in seq order"
    )
    assert shown_seqs == sorted(shown_seqs)
    texts = investor.locator(".msg.role-investor .text").all_inner_texts()
    assert texts == [*before, during, after]
    assert [m["text"] for m in stored if m["sender_role"] == "investor"] == [*before, during, after]
    assert pages.errors == []


def test_a_send_whose_ack_was_lost_is_resent_with_the_same_cid_and_stored_once(
    pages: Any, hub: Any
) -> None:
    text = "我的委托为什么没有成交"
    send_cids: list[str] = []
    acks: list[dict[str, Any]] = []
    dropped = {"done": False}

    def intercept(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "send" and frame.get("text") == text:
                send_cids.append(frame["cid"])
            server.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "ack" and frame.get("cid") in send_cids:
                acks.append(frame)
                if not dropped["done"]:
                    # The connection dies after the server stored the message, before the ack.
                    dropped["done"] = True
                    ws.close(code=4000, reason="test drops the ack")
                    return
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    investor = pages.investor(before_load=lambda page: page.route_web_socket("**/ws", intercept))
    pages.say(investor, text)
    expect(investor.locator(".msg.role-investor .text", has_text=text)).to_have_count(
        1, timeout=15000
    )
    expect(investor.locator('.msg.mine[data-delivery="delivered"]')).to_have_count(1, timeout=30000)
    for _ in range(150):  # the reconnect and re-send take a backoff delay
        if len(acks) >= 2:
            break
        investor.wait_for_timeout(100)
    assert len(send_cids) == 2 and send_cids[0] == send_cids[1], send_cids
    assert [a.get("duplicate") for a in acks] == [False, True], acks
    assert acks[0]["message_id"] == acks[1]["message_id"]

    token = investor.evaluate("() => sessionStorage.getItem('investor.chat.token')")
    stored = server_transcript(hub.url, token, pages.conversation_of(investor))
    assert [m["text"] for m in stored if m["sender_role"] == "investor"] == [text]
    expect(investor.locator(".msg.role-investor")).to_have_count(1)
    assert pages.errors == []
