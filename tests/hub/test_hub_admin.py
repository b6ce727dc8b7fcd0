"""Knowledge base and rules as live, versioned documents; the alert desk; holds; quick replies."""

from __future__ import annotations

import asyncio

import pytest

from chatserver.client import HubError


def bot_reply_after(seq: int):
    return lambda e: e["type"] == "message" and e["sender_role"] == "bot" and e["seq"] > seq


async def test_kb_entry_added_over_http_is_answered_without_restart(hub):
    token = await hub.token("supervisor1")
    entry = {"question": "贵公司周六营业部开门吗", "answer": "本公司营业部周六上午9:00-12:00提供咨询服务，不办理交易类业务。",
             "similar_questions": ["周末营业部上班吗", "星期六能去营业部吗"], "category": "general"}
    status, body = await hub.http("PUT", "/api/kb/entries/branch-saturday", entry, token=token)
    assert status == 200 and body["version"] == 2
    investor, conv = await hub.investor()
    ack = await investor.say(conv["id"], "周末营业部上班吗")
    answer = await investor.next_event(bot_reply_after(ack["seq"]))
    assert answer["meta"]["entry_id"] == "branch-saturday" and "周六上午" in answer["text"]
    status, body = await hub.http("DELETE", "/api/kb/entries/branch-saturday", token=token)
    assert status == 200 and body["version"] == 3
    status, versions = await hub.http("GET", "/api/kb/versions", token=token)
    assert [v["version"] for v in versions["versions"]] == [3, 2, 1]


async def test_kb_import_errors_name_the_line_and_change_nothing(hub):
    token = await hub.token("supervisor1")
    bad = '{"id": "a", "question": "q", "answer": "x"}\n{"id": "b", "question": "q2"}\n'
    status, body = await hub.http("POST", "/api/kb/import?format=jsonl", raw=bad.encode(), token=token)
    assert status == 400 and body["error"]["code"] == "invalid_field" and body["error"]["line"] == 2
    status, kb = await hub.http("GET", "/api/kb", token=token)
    assert kb["version"] == 1
    good = "id,question,answer,similar_questions,category\nnew-1,新问题,新答案,同义一|同义二,general\n"
    status, body = await hub.http("POST", "/api/kb/import?format=csv", raw=good.encode(), token=token)
    assert status == 200 and body["imported"] == 1 and body["version"] == 2
    status, text = await hub.http("GET", "/api/kb/export?format=jsonl", token=token)
    assert status == 200 and '"new-1"' in text and len(text.splitlines()) > 150


async def test_rule_added_over_http_blocks_at_once_and_a_bad_rule_is_refused(hub):
    token = await hub.token("supervisor1")
    rule = {"category": "private_fees", "tier": "block", "roles": ["advisor"], "terms": ["紫色大象卡"],
            "description": "私下收取费用（测试规则）"}
    status, body = await hub.http("PUT", "/api/rules/TEST-001", rule, token=token)
    assert status == 200, body
    version = body["version"]
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    with pytest.raises(HubError) as err:
        await advisor.say(cid, "办一张紫色大象卡就行")
    assert err.value.code == "compliance_blocked" and err.value.event["hits"][0]["rule_id"] == "TEST-001"
    for broken in ({**rule, "regex": "(unclosed", "terms": None}, {**rule, "tier": "catastrophic"}, {**rule, "terms": []}):
        status, body = await hub.http("PUT", "/api/rules/TEST-002", broken, token=token)
        assert status == 400 and body["error"]["code"] == "invalid_field" and "TEST-002" in body["error"]["message"]
    status, rules = await hub.http("GET", "/api/rules", token=token)
    assert rules["version"] == version  # the refused rules never became a version
    status, _ = await hub.http("DELETE", "/api/rules/TEST-001", token=token)
    await advisor.say(cid, "办一张紫色大象卡就行")  # no longer blocked


async def test_try_this_text_reports_tier_and_spans_without_storing(hub):
    token = await hub.token("supervisor1")
    status, body = await hub.http("POST", "/api/compliance/check", {"text": "我们保证收益，稳赚不赔", "role": "advisor"}, token=token)
    assert status == 200 and body["tier"] == "block"
    assert all("我们保证收益，稳赚不赔"[h["start"]:h["end"]] == h["matched"] for h in body["hits"])
    status, body = await hub.http("POST", "/api/compliance/check", {"text": "我们不保证收益，投资需谨慎", "role": "advisor"}, token=token)
    assert body["tier"] == "pass" and body["hits"] == []
    status, body = await hub.http("POST", "/api/compliance/check", {"text": "x", "role": "god"}, token=token)
    assert status == 400 and body["error"]["field"] == "role"
    assert await hub.services.store.list_alerts() == []


async def test_alert_lifecycle_and_rule_statistics(hub):
    supervisor = await hub.connect("supervisor1")
    token = await hub.token("supervisor1")
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    await advisor.say(cid, "加我私人微信聊")
    alert = await supervisor.next_event("alert")
    status, body = await hub.http("POST", f"/api/alerts/{alert['id']}/resolve", {"disposition": "maybe"}, token=token)
    assert status == 400 and body["error"]["field"] == "disposition"
    status, body = await hub.http("POST", f"/api/alerts/{alert['id']}/acknowledge", {"notes": "在看"}, token=token)
    assert status == 200 and body["alert"]["state"] == "acknowledged" and body["alert"]["acknowledged_by"]
    update = await supervisor.next_event("alert_update")
    assert update["alert"]["id"] == alert["id"]
    status, body = await hub.http("POST", f"/api/alerts/{alert['id']}/acknowledge", {}, token=token)
    assert status == 409 and body["error"]["code"] == "invalid_state"
    status, body = await hub.http("POST", f"/api/alerts/{alert['id']}/resolve",
                                  {"disposition": "false_positive", "notes": "客户自己要求的官方企业微信"}, token=token)
    assert status == 200 and body["alert"]["state"] == "resolved" and body["alert"]["disposition"] == "false_positive"
    status, stats = await hub.http("GET", "/api/alerts/stats", token=token)
    row = next(r for r in stats["rules"] if r["rule_id"] == alert["rule_id"])
    assert row["hits"] >= 1 and row["false_positive"] >= 1 and row["false_positive_rate"] > 0
    status, body = await hub.http("GET", f"/api/alerts?state=resolved&advisor_id={advisor.user['id']}", token=token)
    assert [a["id"] for a in body["alerts"]] == [alert["id"]]
    assert body["alerts"][0]["text"] == "加我私人微信聊" and body["alerts"][0]["advisor_id"] == advisor.user["id"]
    status, body = await hub.http("POST", "/api/alerts/nope/acknowledge", {}, token=token)
    assert status == 404
    audit = await hub.services.store.audit_events(cid)
    assert {"alert.acknowledge", "alert.resolve"} <= {e["action"] for e in audit}


async def test_held_message_waits_for_a_supervisor_and_then_reaches_the_investor(hub):
    token = await hub.token("supervisor1")
    rule = {"category": "exaggerated_performance", "tier": "block", "hold": True, "roles": ["advisor"],
            "terms": ["冠军基金"], "description": "需主管复核的宣传用语（测试）"}
    status, body = await hub.http("PUT", "/api/rules/HOLD-001", rule, token=token)
    assert status == 200, body
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    with pytest.raises(HubError) as err:
        await advisor.say(cid, "这是去年的冠军基金")
    message_id = err.value.event["message_id"]
    blocked = await advisor.next_event("blocked")
    assert blocked["held"] is True
    status, holds = await hub.http("GET", "/api/holds", token=token)
    assert [h["message_id"] for h in holds["holds"]] == [message_id]
    await asyncio.sleep(0.2)
    assert not any(e.get("id") == message_id for e in investor.events)
    status, body = await hub.http("POST", f"/api/holds/{message_id}/approve", token=token)
    assert status == 200 and body["approved"] is True
    delivered = await investor.next_event(lambda e: e["type"] == "message" and e["id"] == message_id)
    assert delivered["text"] == "这是去年的冠军基金"
    await advisor.next_event(lambda e: e["type"] == "hold_decided" and e["approved"])
    status, body = await hub.http("POST", f"/api/holds/{message_id}/reject", token=token)
    assert status == 409  # decided once
    # After approval the investor also sees it on resume.
    await investor.request({"type": "resume", "conversation_id": cid, "after_seq": 0})
    await investor.next_event(lambda e: e["type"] == "message" and e["id"] == message_id)


async def test_quick_replies_render_placeholders_and_search(hub):
    token = await hub.token("advisor1")
    status, body = await hub.http("PUT", "/api/quick-replies/my-hello", {"title": "我的问候", "text": "{customer_name}您好，我是{advisor_name}。"},
                                  token=token)
    assert status == 200
    status, body = await hub.http("GET", "/api/quick-replies?q=问候&customer_name=刘女士", token=token)
    mine = next(r for r in body["quick_replies"] if r["id"] == "my-hello")
    assert mine["rendered"] == "刘女士您好，我是王顾问。"
    status, other = await hub.http("GET", "/api/quick-replies", token=await hub.token("advisor2"))
    assert not any(r["id"] == "my-hello" for r in other["quick_replies"])  # an advisor's own stay private
    assert any(r["id"] == "greet" for r in other["quick_replies"])  # the shipped templates are seeded


async def test_unanswered_questions_are_clustered_and_a_reply_can_become_an_entry(hub):
    for question in ("你们公司楼下停车怎么收费", "营业部停车费多少钱", "停车收费标准是什么"):
        investor, conv = await hub.investor()  # one each: after a miss the chat goes to a human
        ack = await investor.say(conv["id"], question)
        miss = await investor.next_event(bot_reply_after(ack["seq"]))
        assert miss["meta"]["action"] in ("handoff", "suggest")
    token = await hub.token("supervisor1")
    status, body = await hub.http("GET", "/api/kb/unanswered", token=token)
    assert status == 200 and body["total"] >= 1 and body["clusters"][0]["count"] >= 1
    status, body = await hub.http("POST", "/api/kb/learn", {"question": "营业部停车怎么收费", "category": "general",
                                                            "answer": "营业部地下停车场前两小时免费。"}, token=await hub.token("advisor1"))
    assert status == 200 and body["entry"]["question"] == "营业部停车怎么收费"
    fresh, conv2 = await hub.investor()
    ack = await fresh.say(conv2["id"], "营业部停车怎么收费")
    answer = await fresh.next_event(bot_reply_after(ack["seq"]))
    assert "前两小时免费" in answer["text"]


async def test_supervisor_board_shows_advisors_and_groups(hub):
    advisor = await hub.connect("advisor1")
    await hub.human_chat(advisor)
    status, board = await hub.http("GET", "/api/supervisor/board", token=await hub.token("supervisor1"))
    assert status == 200
    me = next(a for a in board["advisors"] if a["id"] == advisor.user["id"])
    assert me["status"] == "online" and me["open_chats"] == 1 and me["capacity"] == 5
    assert {g["group"] for g in board["groups"]} >= {"general", "account"}
    status, _ = await hub.http("GET", "/api/supervisor/board", token=await hub.token("advisor1"))
    assert status == 403


async def test_customer_import_and_profile_visibility(hub):
    admin = await hub.token("admin")
    csv_body = "id,name,star,risk_level,dedicated_advisor\nC7001,钱进,5,C5,advisor2\nC7002,,1,C1,\n"
    status, body = await hub.http("POST", "/api/admin/customers/import", raw=csv_body.encode(), token=admin)
    assert status == 200 and body["imported"] == 1 and body["errors"] == [{"line": 3, "message": "name is required"}]
    status, body = await hub.http("PUT", "/api/admin/customers", {"id": "C7003", "name": "孙悦", "star": 9}, token=admin)
    assert status == 400 and "star" in body["error"]["message"]
    advisor_token = await hub.token("advisor1")
    status, body = await hub.http("GET", "/api/customers/C7001", token=advisor_token)
    assert status == 404  # not one of advisor1's chats
    status, body = await hub.http("GET", "/api/customers/C7001", token=await hub.token("supervisor1"))
    assert status == 200 and body["customer"]["star"] == 5 and body["customer"]["dedicated_advisor"] == "advisor2"


async def test_two_learned_entries_in_the_same_second_are_both_kept(hub):
    token = await hub.token("advisor1")
    ids = []
    for question in ("营业部几点下班", "营业部周日开门吗"):
        status, body = await hub.http("POST", "/api/kb/learn", {"question": question, "answer": "工作日17:00下班，周日休息。"},
                                      token=token)
        assert status == 200
        ids.append(body["entry"]["id"])
    assert len(set(ids)) == 2
    status, kb = await hub.http("GET", "/api/kb", token=token)
    assert {e["id"] for e in kb["entries"]} >= set(ids)


async def test_advisor_first_reply_is_filed_beside_the_unanswered_question(hub):
    advisor = await hub.connect("advisor1")
    investor, conv_id = await hub.human_chat(advisor, question="你们公司楼下停车怎么收费")
    await advisor.say(conv_id, "有的，营业部在地铁2号线A出口旁边。")
    await advisor.say(conv_id, "还有别的问题吗？")  # only the first reply is filed
    token = await hub.token("supervisor1")
    status, body = await hub.http("GET", "/api/kb/unanswered", token=token)
    assert status == 200
    filed = [c for c in body["clusters"] if "你们公司楼下停车怎么收费" in c["members"]]
    assert filed and filed[0]["advisor_reply"] == "有的，营业部在地铁2号线A出口旁边。"
