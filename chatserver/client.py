"""A small asyncio client for the hub on `websockets`, and a command line to try the server.

`python -m chatserver.client --role investor --say "开户需要什么材料"` prints the replies. The
same HubClient drives scripts/smoke.py, scripts/loadgen.py and the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import sys
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import websockets

Event = dict[str, Any]


class HubError(Exception):
    """The hub answered a frame with an error event."""

    def __init__(self, event: Event):
        super().__init__(f"{event.get('code')}: {event.get('message')}")
        self.event = event
        self.code = event.get("code")


def http_json(url: str, body: dict[str, Any] | None = None, token: str | None = None,
              method: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """Blocking JSON over HTTP (urllib), for scripts and CLI use; returns (status, body)."""
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, orjson.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return exc.code, raw.decode(errors="replace")


async def get_token(base_url: str, username: str | None = None, password: str | None = None,
                    name: str | None = None) -> tuple[str, Event]:
    """Log in (username/password) or get an anonymous visitor token."""
    if username:
        status, body = await asyncio.to_thread(http_json, f"{base_url}/api/login",
                                               {"username": username, "password": password})
    else:
        status, body = await asyncio.to_thread(http_json, f"{base_url}/api/visitor", {"name": name or "访客"})
    if status != 200:
        raise HubError(body.get("error", {}) if isinstance(body, dict) else {"code": status})
    return body["token"], body["user"]


class HubClient:
    """One authenticated WebSocket: send frames, await their ack, and read events in order."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.ws: Any = None
        self.user: Event = {}
        self.events: deque[Event] = deque()
        self._pending: dict[str, asyncio.Future[Event]] = {}
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        # cids are the idempotency keys of a user's messages, so they must not repeat across
        # this user's sessions: a fresh prefix per client (as the web client does).
        self._cid_prefix = secrets.token_hex(4)
        self.closed: asyncio.Future[tuple[int | None, str]] | None = None

    @classmethod
    async def connect(cls, base_url: str, token: str, *, open_timeout: float = 10) -> HubClient:
        client = cls(base_url, token)
        await client._open(open_timeout)
        return client

    async def _open(self, open_timeout: float) -> None:
        url = self.base_url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        self.ws = await websockets.connect(url, open_timeout=open_timeout, max_size=2**22, ping_interval=None)
        self.closed = asyncio.get_running_loop().create_future()
        await self.ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
        first = orjson.loads(await asyncio.wait_for(self.ws.recv(), 10))
        if first.get("type") != "auth_ok":
            await self.ws.close()
            raise HubError(first)
        self.user = first["user"]
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                event = orjson.loads(raw)
                cid = event.get("cid")
                if event.get("type") in ("ack", "error") and cid in self._pending:
                    future = self._pending.pop(cid)
                    if not future.done():
                        future.set_result(event)
                else:
                    self.events.append(event)
                    self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.closed is not None and not self.closed.done():
                self.closed.set_result((self.ws.close_code, self.ws.close_reason or ""))
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed before the answer"))
            self._arrived.set()

    def new_cid(self) -> str:
        return f"{self._cid_prefix}-{next(self._ids)}"

    async def request(self, frame: Event, *, timeout: float = 10.0, cid: str | None = None) -> Event:
        """Send a frame with a cid and return its ack; raise HubError on an error answer."""
        frame = dict(frame)
        frame["cid"] = cid or frame.get("cid") or self.new_cid()
        answer = await self.send_frame(frame, timeout=timeout)
        if answer.get("type") == "error":
            raise HubError(answer)
        return answer

    async def send_frame(self, frame: Event, *, timeout: float = 10.0) -> Event:
        """Send a frame and return whatever answers its cid (ack or error)."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending[frame["cid"]] = future
        await self.ws.send(orjson.dumps(frame).decode())
        return await asyncio.wait_for(future, timeout)

    async def send_raw(self, raw: str | bytes) -> None:
        await self.ws.send(raw)

    async def next_event(self, predicate: Callable[[Event], bool] | str, *, timeout: float = 10.0) -> Event:
        """The first event (oldest first) matching predicate or type name, removed from the buffer."""
        match = (lambda e: e.get("type") == predicate) if isinstance(predicate, str) else predicate
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in list(self.events):
                if match(event):
                    self.events.remove(event)
                    return event
            if self.closed is not None and self.closed.done():
                raise ConnectionError(f"connection closed {self.closed.result()} while waiting")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching event in {timeout}s; have {[e.get('type') for e in self.events]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    # -- conveniences ---------------------------------------------------------------------
    async def start(self, channel: str = "web") -> Event:
        return (await self.request({"type": "start", "channel": channel}))["conversation"]

    async def say(self, conversation_id: str, text: str, cid: str | None = None) -> Event:
        return await self.request({"type": "send", "conversation_id": conversation_id, "text": text}, cid=cid)


async def _cli(args: argparse.Namespace) -> int:
    username = args.username or ({"investor": None, "advisor": "advisor1", "supervisor": "supervisor1"}[args.role])
    token, user = await get_token(args.url, username, args.password)
    client = await HubClient.connect(args.url, token)
    print(f"connected as {user['name']} ({user['role']})", file=sys.stderr)
    try:
        if args.role == "investor":
            conv = await client.start(args.channel)
            for text in args.say or []:
                ack = await client.say(conv["id"], text)
                print(f"> {text}   [seq {ack['seq']}]")
                await _print_for(client, args.wait)
            if args.human:
                await client.request({"type": "handoff", "conversation_id": conv["id"]})
                await _print_for(client, args.wait)
        else:
            await _print_for(client, args.wait)
    finally:
        await client.close()
    return 0


async def _print_for(client: HubClient, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            event = await client.next_event(lambda e: True, timeout=left)
        except TimeoutError:
            return
        if event["type"] == "message":
            if event["sender_role"] != client.user.get("role") or event["sender_id"] != client.user.get("id"):
                print(f"< [{event['sender_name']}] {event['text']}")
        elif event["type"] == "conversation":
            extra = {k: v for k, v in event.items() if k in ("position", "eta_s", "advisor_name")}
            print(f"* conversation {event['state']} {json.dumps(extra, ensure_ascii=False) if extra else ''}")
        else:
            print(f"* {json.dumps(event, ensure_ascii=False)[:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatserver.client", description="try the hub from a terminal")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--role", choices=["investor", "advisor", "supervisor"], default="investor")
    parser.add_argument("--username", help="log in as this user (investors default to an anonymous visitor)")
    parser.add_argument("--password", default="demo1234")
    parser.add_argument("--channel", default="web")
    parser.add_argument("--say", action="append", help="a message to send (repeatable)")
    parser.add_argument("--human", action="store_true", help="ask for a human (转人工) after the messages")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds to print replies after each step")
    return asyncio.run(_cli(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
