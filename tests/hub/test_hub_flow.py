"""Whole conversations through real WebSockets: bot, handoff, advisor, compliance, queue, close."""

from __future__ import annotations

import asyncio
import time

import pytest

from chatserver.client import HubError


def bot_reply_after(seq: int):
    return lambda e: e["type"] == "message" and e["sender_role"] == "bot" and e["seq"] > seq


async def test_bot_answers_then_handoff_gives_advisor_transcript_and_suggestions(any_hub):
    hub = any_hub
    advisor = await hub.connect("advisor1")
    investor, conv = await hub.investor("investor2")
    ack = await investor.say(conv["id"], "开户需要准备什么材料")
    answer = await investor.next_event(bot_reply_after(ack["seq"]))
    assert answer["meta"]["action"] == "answer" and "身份证" in answer["text"]
    await investor.say(conv["id"], "转人工")
    assigned = await advisor.next_event("assigned")
    assert assigned["conversation"]["id"] == conv["id"]
    texts = [m["text"] for m in assigned["transcript"]]
    assert "开户需要准备什么材料" in texts and answer["text"] in texts  # the bot part is handed over
    assert assigned["customer"]["id"] == "C1002" and assigned["customer"]["star"] == 3
    state = await investor.next_event(lambda e: e["type"] == "conversation" and e["state"] == "assigned")
    assert state["advisor_name"] == "王顾问"
    asked = await investor.say(conv["id"], "两融怎么开通")
    suggestions = await advisor.next_event(lambda e: e["type"] == "suggestions" and e["for_message"] == asked["message_id"])
    assert suggestions["conversation_id"] == conv["id"] and 1 <= len(suggestions["items"]) <= 3
    assert any(item["category"] == "margin" for item in suggestions["items"])


async def test_bot_never_replies_after_a_human_took_over(hub):
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    await investor.say(cid, "交易时间是几点")
    await advisor.next_event(lambda e: e["type"] == "message" and e["text"] == "交易时间是几点")
    await asyncio.sleep(0.3)
    stored = await hub.services.store.messages_after(cid, 0)
    last_investor = max(m.seq for m in stored if m.text == "交易时间是几点")
    assert not [m for m in stored if m.seq > last_investor and m.sender_role == "bot"]


async def test_blocked_advisor_message_never_reaches_investor_and_alerts_supervisor(any_hub):
    hub = any_hub
    supervisor = await hub.connect("supervisor1")
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    with pytest.raises(HubError) as err:
        await advisor.say(cid, "这个产品保证收益，稳赚不赔")
    assert err.value.code == "compliance_blocked"
    hits = err.value.event["hits"]
    assert {h["category"] for h in hits} == {"promise_returns"} and hits[0]["matched"] in "这个产品保证收益，稳赚不赔"
    blocked = await advisor.next_event("blocked")
    assert blocked["conversation_id"] == cid and blocked["hits"]
    alert = await supervisor.next_event("alert")
    assert alert["conversation_id"] == cid and alert["tier"] == "block" and alert["category"] == "promise_returns"
    assert alert["matched"] == "这个产品保证收益，稳赚不赔"[alert["span_start"]:alert["span_end"]]
    # A later compliant reply is delivered; the blocked one never is, not even on resume.
    await advisor.say(cid, "您好，基金投资有风险，我们不保证收益。")
    await investor.next_event(lambda e: e["type"] == "message" and e["text"].startswith("您好，基金投资有风险"))
    assert not any(e.get("type") == "message" and "稳赚不赔" in e.get("text", "") for e in investor.events)
    await investor.request({"type": "resume", "conversation_id": cid, "after_seq": 0})
    await investor.next_event("resumed")
    assert not any("稳赚不赔" in e.get("text", "") for e in investor.events if e["type"] == "message")
    stored = [m for m in await hub.services.store.messages_after(cid, 0) if "稳赚不赔" in m.text]
    assert len(stored) == 1 and stored[0].verdict == "block"  # kept for the record


async def test_warn_message_is_delivered_and_raises_an_alert(hub):
    supervisor = await hub.connect("supervisor1")
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    ack = await advisor.say(cid, "加我私人微信聊")
    delivered = await investor.next_event(lambda e: e["type"] == "message" and e["text"] == "加我私人微信聊")
    assert delivered["verdict"] == "warn" and delivered["seq"] == ack["seq"]
    alert = await supervisor.next_event("alert")
    assert alert["tier"] == "warn" and alert["category"] == "off_channel"
    status, body = await hub.http("GET", "/api/alerts?tier=warn", token=await hub.token("supervisor1"))
    assert status == 200 and body["alerts"][0]["id"] == alert["id"]


async def test_phrase_split_across_two_advisor_messages_is_caught(hub):
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    await advisor.say(cid, "这只基金保证")
    with pytest.raises(HubError) as err:
        await advisor.say(cid, "收益没问题")
    assert err.value.code == "compliance_blocked"


async def test_investor_personal_data_is_masked_before_the_advisor_sees_it(hub):
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    await investor.say(cid, "我的身份证号是110101199003074514")
    seen = await advisor.next_event(lambda e: e["type"] == "message" and e["sender_role"] == "investor"
                                    and "身份证" in e["text"])
    assert "110101199003074514" not in seen["text"] and "****" in seen["text"]


async def test_queue_position_and_close_assigns_next_in_same_event(hub_factory):
    hub = await hub_factory(default_capacity=1)
    advisor = await hub.connect("advisor1")
    first, first_cid = await hub.human_chat(advisor)
    second, conv = await hub.investor()
    await second.request({"type": "handoff", "conversation_id": conv["id"]})
    queued = await second.next_event(lambda e: e["type"] == "conversation" and e["state"] == "queued")
    assert queued["position"] == 1 and queued["eta_s"] >= 0
    await advisor.request({"type": "close", "conversation_id": first_cid})
    # The close event itself hands the waiting chat over: no timer, no polling.
    assigned = await advisor.next_event(lambda e: e["type"] == "assigned", timeout=2)
    assert assigned["conversation"]["id"] == conv["id"]
    await first.next_event(lambda e: e["type"] == "conversation" and e["state"] == "closed" and e["rating_requested"])


async def test_transfer_to_group_carries_a_staff_only_note(hub):
    advisor1 = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor1)
    advisor2 = await hub.connect("advisor2")
    await advisor1.request({"type": "transfer", "conversation_id": cid, "to_advisor": advisor2.user["id"],
                            "note": "客户想了解两融"})
    assigned = await advisor2.next_event("assigned")
    assert assigned["conversation"]["id"] == cid
    assert any(m["kind"] == "note" and "客户想了解两融" in m["text"] for m in assigned["transcript"])
    await advisor1.next_event("unassigned")
    await asyncio.sleep(0.1)
    assert not any(e.get("kind") == "note" for e in investor.events if e["type"] == "message")
    with pytest.raises(HubError) as err:
        await advisor1.say(cid, "我还在吗")
    assert err.value.code == "conversation_not_found"


async def test_leave_message_when_nobody_is_online_queues_for_next_advisor(hub):
    investor, conv = await hub.investor()
    ack = await investor.request({"type": "leave_message", "conversation_id": conv["id"],
                                  "text": "想咨询两融，明天联系我", "contact": "13800000000"})
    assert ack["seq"] >= 2
    await investor.next_event(lambda e: e["type"] == "conversation" and e["state"] == "queued")
    assert not any(e["type"] == "message" and e["sender_role"] == "bot" and e["seq"] > ack["seq"]
                   for e in investor.events)  # a left message is for a human, not the bot
    advisor = await hub.connect("advisor2")  # the message is about 两融: the margin group serves it
    assigned = await advisor.next_event("assigned")
    assert any(m["kind"] == "leave_message" for m in assigned["transcript"])
    assert assigned["conversation"]["intent"] == "margin"


async def test_advisor_drop_keeps_chats_for_grace_then_reroutes(hub_factory):
    hub = await hub_factory(grace_period_s=0.5)
    advisor1 = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor1)  # an account question
    advisor3 = await hub.connect("advisor3")  # also in the account group
    await advisor1.close()
    assigned = await advisor3.next_event("assigned", timeout=5)
    assert assigned["conversation"]["id"] == cid
    assert any(m["text"] == "我想咨询一下我的账户问题" for m in assigned["transcript"])  # history travels
    stored = await hub.services.store.get_conversation(cid)
    assert stored.advisor_id == advisor3.user["id"] and stored.state == "assigned"


async def test_grab_mode_exactly_one_claim_wins(hub_factory):
    hub = await hub_factory(grab_groups="general,account,trading,margin,wealth,complaints")
    a1, a2 = await hub.connect("advisor1"), await hub.connect("advisor3")
    investor, conv = await hub.investor()
    await investor.request({"type": "handoff", "conversation_id": conv["id"]})
    for advisor in (a1, a2):
        offer = await advisor.next_event(lambda e: e["type"] == "pool" and e["action"] == "offer")
        assert offer["conversation"]["id"] == conv["id"]
    results = await asyncio.gather(
        a1.send_frame({"type": "claim", "conversation_id": conv["id"], "cid": "x1"}),
        a2.send_frame({"type": "claim", "conversation_id": conv["id"], "cid": "x2"}),
    )
    assert sorted(r["type"] for r in results) == ["ack", "error"]
    loser = results[0] if results[0]["type"] == "error" else results[1]
    assert loser["code"] in ("already_taken", "conversation_not_found")


async def test_supervisor_can_watch_and_read_any_conversation(hub):
    supervisor = await hub.connect("supervisor1")
    investor, conv = await hub.investor()
    await supervisor.request({"type": "watch", "conversation_id": conv["id"]})
    await investor.say(conv["id"], "请问佣金多少")
    seen = await supervisor.next_event(lambda e: e["type"] == "message" and e["text"] == "请问佣金多少")
    assert seen["conversation_id"] == conv["id"]
    status, body = await hub.http("GET", f"/api/conversations/{conv['id']}", token=await hub.token("supervisor1"))
    assert status == 200 and any(m["text"] == "请问佣金多少" for m in body["messages"])


async def test_transcript_export_json_and_csv(hub):
    investor, conv = await hub.investor()
    await investor.say(conv["id"], "导出测试")
    token = await hub.token("supervisor1")
    status, body = await hub.http("GET", f"/api/conversations/{conv['id']}/export?format=json", token=token)
    assert status == 200 and all(len(m["hash"]) == 64 for m in body["messages"])
    status, text = await hub.http("GET", f"/api/conversations/{conv['id']}/export?format=csv", token=token)
    assert status == 200 and "导出测试" in text and text.splitlines()[0].startswith("conversation_id,seq")
    status, body = await hub.http("GET", f"/api/conversations/{conv['id']}/export?format=xml", token=token)
    assert status == 400 and body["error"]["code"] == "invalid_field"


async def test_nobody_online_offers_leave_a_message(hub):
    investor, conv = await hub.investor()
    await investor.request({"type": "handoff", "conversation_id": conv["id"]})
    queued = await investor.next_event(lambda e: e["type"] == "conversation" and e["state"] == "queued")
    assert queued["offline"] == "no_advisor"
    notice = await investor.next_event(lambda e: e["type"] == "message" and e["sender_role"] == "system")
    assert "留言" in notice["text"] and notice["meta"]["offline"] == "no_advisor"


async def test_outside_business_hours_says_so(hub_factory):
    import datetime
    import zoneinfo

    today = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Shanghai")).weekday()
    other = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today + 3) % 7]
    hub = await hub_factory(business_hours=f"general={other} 09:00-17:00")
    investor, conv = await hub.investor()
    await investor.request({"type": "handoff", "conversation_id": conv["id"]})
    queued = await investor.next_event(lambda e: e["type"] == "conversation" and e["state"] == "queued")
    assert queued["offline"] == "closed"
    # The chat stays queued: the next advisor who comes on gets it with the whole transcript.
    advisor = await hub.connect("advisor1")
    assigned = await advisor.next_event("assigned")
    assert assigned["conversation"]["id"] == conv["id"]


async def test_rephrasing_after_a_block_is_not_combined_with_the_blocked_text(hub):
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    with pytest.raises(HubError):
        await advisor.say(cid, "这个产品保证收益")
    ack = await advisor.say(cid, "收益会随市场波动，请您根据自己的风险承受能力决定。")
    assert ack["seq"] > 0


async def test_transfer_accepts_a_username(hub):
    advisor1 = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor1)
    advisor2 = await hub.connect("advisor2")
    await advisor1.request({"type": "transfer", "conversation_id": cid, "to_advisor": "advisor2"})
    assert (await advisor2.next_event("assigned"))["conversation"]["id"] == cid
    with pytest.raises(HubError) as err:
        await advisor2.request({"type": "transfer", "conversation_id": cid, "to_advisor": "nobody"})
    assert err.value.code == "routing_rejected" and err.value.event["routing_code"] == "unknown_advisor"


async def test_advisors_see_the_waiting_queue_of_their_groups(hub_factory):
    hub = await hub_factory(default_capacity=1)
    advisor = await hub.connect("advisor1")
    await hub.human_chat(advisor)  # advisor1 is now full
    waiting, conv = await hub.investor("investor1")  # a 5-star customer
    await waiting.request({"type": "handoff", "conversation_id": conv["id"]})
    await waiting.next_event(lambda e: e["type"] == "conversation" and e["state"] == "queued")
    status, body = await hub.http("GET", "/api/queue", token=await hub.token("advisor1"))
    assert status == 200
    entry = next(i for i in body["queue"] if i["conversation"]["id"] == conv["id"])
    assert entry["star"] == 5 and entry["position"] == 1 and entry["waiting_s"] >= 0
    status, body = await hub.http("GET", "/api/queue", token=await hub.token("investor1"))
    assert status == 403


async def test_two_sockets_handing_over_one_chat_at_once_both_get_acks(hub):
    """Two tabs of one investor press 转人工 together: one hand-over, and no internal error."""
    advisor = await hub.connect("advisor1")
    first, conv = await hub.investor("investor2")
    second = await hub.connect("investor2")
    results = await asyncio.gather(
        first.request({"type": "handoff", "conversation_id": conv["id"]}),
        second.request({"type": "handoff", "conversation_id": conv["id"]}),
        return_exceptions=True)
    assert all(isinstance(r, dict) and r["type"] == "ack" for r in results), results
    assigned = await advisor.next_event(lambda e: e["type"] == "assigned")
    assert assigned["conversation"]["id"] == conv["id"]
    row = await hub.services.store.get_conversation(conv["id"])
    assert row.state == "assigned"


async def test_a_close_that_committed_but_never_reached_routing_frees_the_advisor_on_retry(hub_factory):
    """The close's state change committed, then the request failed before routing heard of it
    (the database went away mid-request): the advisor's slot stayed taken. The client's retry
    finds the chat closed and frees the slot, so the queued chat is handed over."""
    hub = await hub_factory(default_capacity=1)
    advisor = await hub.connect("advisor1")
    first, first_cid = await hub.human_chat(advisor)
    second, conv = await hub.investor()
    await second.request({"type": "handoff", "conversation_id": conv["id"]})
    await second.next_event(lambda e: e["type"] == "conversation" and e["state"] == "queued")
    store = hub.services.store
    await store.update_conversation(first_cid, time.time(), state="closed", closed_at=time.time())
    await asyncio.sleep(0.2)
    assert not any(e["type"] == "assigned" and e["conversation"]["id"] == conv["id"] for e in advisor.events)
    await advisor.request({"type": "close", "conversation_id": first_cid})  # the retry
    assigned = await advisor.next_event(lambda e: e["type"] == "assigned", timeout=2)
    assert assigned["conversation"]["id"] == conv["id"]


async def test_a_handoff_that_committed_but_never_reached_routing_is_routed_on_retry(hub):
    """转人工 committed the queued state, then failed before routing heard of it: the investor's
    retry routes the chat instead of answering "queued already" forever."""
    advisor = await hub.connect("advisor1")
    investor, conv = await hub.investor()
    await hub.services.store.update_conversation(conv["id"], time.time(), state="queued")
    await investor.request({"type": "handoff", "conversation_id": conv["id"]})
    assigned = await advisor.next_event(lambda e: e["type"] == "assigned", timeout=2)
    assert assigned["conversation"]["id"] == conv["id"]
    await investor.request({"type": "handoff", "conversation_id": conv["id"]})  # routed: a no-op
    await asyncio.sleep(0.2)
    assert not any(e["type"] == "assigned" for e in advisor.events)  # the one above was taken out
