"""The least a server could do for the hub's frames: the baseline that bench_pipeline.py compares to.

An aiohttp WebSocket server at /ws with no auth check, no storage, no compliance, no bot and no
routing: it forwards each `send` as a `message` event to both sides of a fixed pair and acks the
sender, with the same frame shapes as the hub (docs/protocol.md), so the same loadgen drives it.

    python scripts/bare_relay.py --port 8201

The auth token names the pairing: `bare:advisor:<a>` or `bare:investor:<i>:advisor:<a>`
(scripts/loadgen.py --bare sends these). `start` answers with conversation `bare-<i>` and tells
the paired advisor it was `assigned`; `handoff` and `ping` are acknowledged; anything else is
answered with `unknown_type`.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
import uuid
from typing import Any

import orjson
from aiohttp import WSMsgType, web


class Relay:
    def __init__(self) -> None:
        self.advisors: dict[str, web.WebSocketResponse] = {}
        self.investors: dict[str, web.WebSocketResponse] = {}
        self.pairs: dict[
            str, tuple[str, str]
        ] = {}  # conversation id -> (investor key, advisor key)
        self.seqs: dict[str, itertools.count[int]] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024, compress=False)  # same as the hub
        await ws.prepare(request)
        first = await ws.receive()
        if first.type != WSMsgType.TEXT:
            await ws.close()
            return ws
        token = str(orjson.loads(first.data).get("token", ""))
        parts = token.split(":")
        role = parts[1] if len(parts) >= 3 else "investor"
        key = f"{role}:{parts[2] if len(parts) >= 3 else uuid.uuid4().hex}"
        peer = f"advisor:{parts[4]}" if role == "investor" and len(parts) >= 5 else None
        (self.advisors if role == "advisor" else self.investors)[key] = ws
        await ws.send_str(
            orjson.dumps(
                {
                    "type": "auth_ok",
                    "server_time": time.time(),
                    "user": {"id": key, "role": role, "name": key, "customer_id": None},
                }
            ).decode()
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self.on_frame(ws, key, role, peer, orjson.loads(msg.data))
        finally:
            (self.advisors if role == "advisor" else self.investors).pop(key, None)
        return ws

    async def on_frame(
        self,
        ws: web.WebSocketResponse,
        key: str,
        role: str,
        peer: str | None,
        frame: dict[str, Any],
    ) -> None:
        kind = frame.get("type")
        cid = frame.get("cid")
        if kind == "send":
            conv_id = frame["conversation_id"]
            investor, advisor = self.pairs[conv_id]
            seq = next(self.seqs[conv_id])
            event = {
                "type": "message",
                "conversation_id": conv_id,
                "id": uuid.uuid4().hex,
                "seq": seq,
                "sender_id": key,
                "sender_role": role,
                "sender_name": key,
                "kind": "text",
                "text": frame["text"],
                "created_at": time.time(),
            }
            payload = orjson.dumps(event).decode()
            # The hub sends each message to both sides; so does the baseline.
            for target in (self.investors.get(investor), self.advisors.get(advisor)):
                if target is not None and not target.closed:
                    await target.send_str(payload)
            await ws.send_str(
                orjson.dumps(
                    {
                        "type": "ack",
                        "for": "send",
                        "cid": cid,
                        "message_id": event["id"],
                        "seq": seq,
                        "conversation_id": conv_id,
                        "duplicate": False,
                    }
                ).decode()
            )
        elif kind == "start" and peer is not None:
            conv_id = "bare-" + key.split(":", 1)[1]
            self.pairs[conv_id] = (key, peer)
            self.seqs.setdefault(conv_id, itertools.count(1))
            conversation = {
                "id": conv_id,
                "state": "assigned",
                "channel": frame.get("channel", "web"),
                "last_seq": 0,
                "advisor_id": peer,
                "investor_id": key,
            }
            advisor_ws = self.advisors.get(peer)
            if advisor_ws is not None:
                await advisor_ws.send_str(
                    orjson.dumps(
                        {
                            "type": "assigned",
                            "conversation": conversation,
                            "reason": "fixed_pair",
                            "transcript": [],
                        }
                    ).decode()
                )
            await ws.send_str(
                orjson.dumps(
                    {
                        "type": "ack",
                        "for": "start",
                        "cid": cid,
                        "conversation": conversation,
                        "advisor_name": peer,
                    }
                ).decode()
            )
        elif kind in ("handoff", "ping"):
            await ws.send_str(orjson.dumps({"type": "ack", "for": kind, "cid": cid}).decode())
        else:
            await ws.send_str(
                orjson.dumps(
                    {
                        "type": "error",
                        "code": "unknown_type",
                        "cid": cid,
                        "message": "the bare relay only relays",
                    }
                ).decode()
            )


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ws", Relay().handle)
    app.router.add_get("/healthz", healthz)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="bare WebSocket relay: the baseline for the hub benchmark"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8201)
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    print(f"bare relay listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
