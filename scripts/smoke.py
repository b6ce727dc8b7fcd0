"""One whole conversation against a running hub; exits 0 only if every step was observed.

investor → bot answer → 转人工 → advisor gets the chat with transcript → reply reaches the
investor → close → rating stored. Usage: python scripts/smoke.py --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from chatserver.client import HubClient, get_token, http_json


async def smoke(url: str, advisor: str, password: str, supervisor: str) -> list[str]:
    steps: list[str] = []

    def ok(step: str) -> None:
        steps.append(step)
        print(f"ok  {step}", flush=True)

    token, _ = await get_token(url, name="冒烟测试访客")
    investor = await HubClient.connect(url, token)
    adv_token, adv_user = await get_token(url, advisor, password)
    staff = await HubClient.connect(url, adv_token)
    await staff.request({"type": "presence", "status": "online"})
    try:
        conv = await investor.start()
        cid = conv["id"]
        ok(f"investor started conversation {cid}")
        ack = await investor.say(cid, "开户需要什么材料")
        ok(f"investor message acknowledged (seq {ack['seq']})")
        answer = await investor.next_event(lambda e: e["type"] == "message" and e["sender_role"] == "bot"
                                           and e["seq"] > ack["seq"])
        ok(f"bot answered: {answer['text'][:30]}…")
        await investor.request({"type": "handoff", "conversation_id": cid})
        ok("investor asked for a human (转人工)")
        assigned = await staff.next_event(lambda e: e["type"] == "assigned" and e["conversation"]["id"] == cid, timeout=15)
        texts = [m["text"] for m in assigned["transcript"]]
        if "开户需要什么材料" not in texts:
            raise AssertionError("the advisor's transcript lacks the investor's question")
        ok(f"{adv_user['name']} was assigned the chat with its transcript ({len(texts)} messages)")
        await investor.next_event(lambda e: e["type"] == "conversation" and e["state"] == "assigned")
        ok("investor was told an advisor joined")
        reply = "您好，我是您的顾问，开户材料请准备身份证和本人银行卡。"
        await staff.say(cid, reply)
        await investor.next_event(lambda e: e["type"] == "message" and e["text"] == reply)
        ok("advisor reply reached the investor")
        await staff.request({"type": "close", "conversation_id": cid})
        await investor.next_event(lambda e: e["type"] == "conversation" and e["state"] == "closed"
                                  and e.get("rating_requested"))
        ok("conversation closed and the investor was asked for a rating")
        await investor.request({"type": "rate", "conversation_id": cid, "score": 5, "comment": "smoke"})
        sup_token, _ = await get_token(url, supervisor, password)
        status, body = await asyncio.to_thread(http_json, f"{url}/api/conversations/{cid}", None, sup_token)
        if status != 200 or not body.get("rating") or body["rating"]["score"] != 5:
            raise AssertionError(f"rating not stored: HTTP {status} {body}")
        ok("rating 5 stored and visible to the supervisor")
    finally:
        await investor.close()
        await staff.close()
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--advisor", default="advisor1")
    parser.add_argument("--supervisor", default="supervisor1")
    parser.add_argument("--password", default="demo1234")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    started = time.monotonic()
    try:
        steps = asyncio.run(asyncio.wait_for(smoke(args.url.rstrip("/"), args.advisor, args.password, args.supervisor),
                                             args.timeout))
    except Exception as exc:  # noqa: BLE001 - any failure is a failed smoke run, reported plainly
        print(f"FAIL {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke passed: {len(steps)} steps in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
