"""Load generator for the hub: N investors and M advisors holding real conversations over /ws.

Runs in its own process on the `websockets` client; prints throughput, send-to-delivery and
bot-answer latency, and counts every message sent, acknowledged, delivered, lost or duplicated.

    python scripts/loadgen.py --url http://127.0.0.1:8200 --investors 100 --advisors 10 \
        --chats-per-advisor 10 --duration 10            # closed loop against the hub
    python scripts/loadgen.py --url http://127.0.0.1:8201 --bare ...   # against bare_relay.py

Workload, per conversation: the investor connects, starts a chat, asks the bot one question
(bot-answer latency), asks for a human (转人工) and is assigned to an advisor; then the investor
and the advisor exchange messages. Closed loop (default): each side answers the message it
received, so one message per conversation is in flight. Open loop (`--rate R`): messages are
sent on a fixed schedule, R per second over all conversations, whatever the answers.
`--also-half` runs a closed-loop phase, then an open-loop phase at half the throughput it
measured, on the same connections.

Every client frame is paced to the hub's documented per-connection limit (20 frames/s, burst
40; `--frame-rate`), as a well-behaved client is; the same pacing applies in `--bare` mode.
Visitor tokens come from POST /api/visitor, spread over several loopback source addresses
(127.0.0.x) because the hub limits HTTP requests per address and 1,000 investors on one
machine would otherwise share one address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import glob
import itertools
import json
import os
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import websockets

# The open loop wakes at most every 2 ms and sends what has come due since. uvloop's timers
# count whole milliseconds: a sleep of the 0.5 ms between two messages at 2,000/s ended at once,
# and the pacing loop spun, taking ~0.3 of a core from the server it measured (the load
# generator used 76% of a core at half rate and 45% in the closed loop at twice the rate).
PACE_TICK_S = 0.002
GC_THRESHOLDS = (700, 10, 100)  # full collections ten times rarer than Python's default (see setup)

Event = dict[str, Any]

INVESTOR_LINES = (
    "好的，明白了",
    "那手续费是多少呢",
    "还需要准备什么",
    "谢谢，我再确认一下",
    "请问多久能办好",
)
ADVISOR_LINES = (
    "您好，我来帮您查询",
    "请稍等，马上为您确认",
    "这个可以在线办理",
    "还有其他问题吗",
    "已为您记录",
)
BOT_QUESTION = "开户需要什么材料"
# Questions the demo knowledge base answers outright, asked by the bot probes during each phase.
PROBE_QUESTIONS = (
    "开户需要什么材料",
    "两融开通条件是什么",
    "怎么修改交易密码",
    "基金赎回多久到账",
    "银证转账怎么操作",
    "风险测评怎么做",
)
MARK = "#lg"  # marks a loadgen message: "#lg<conv>.<n>.<send time µs, base 36>"


def raise_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(reversed(out)) or "0"


def stamp_text(line: str, conv: int, n: int) -> str:
    # Base 36 keeps digit runs short, so compliance's PII masks (phone, ID, card) never touch it.
    return f"{line} {MARK}{conv}.{n}.{_b36(time.time_ns() // 1000)}"


def parse_stamp(text: str) -> tuple[int, int, float] | None:
    at = text.rfind(MARK)
    if at < 0:
        return None
    try:
        conv, n, sent = text[at + len(MARK) :].split(".")
        return int(conv), int(n), int(sent, 36) / 1e6
    except ValueError:
        return None


class Pacer:
    """Client-side token bucket: keeps one connection under the server's frame limit."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            # At least a pacing tick: uvloop would end a sub-millisecond sleep at once (see PACE_TICK_S).
            await asyncio.sleep(max(PACE_TICK_S, (1 - self.tokens) / self.rate))


@dataclass
class Stats:
    """Everything counted in one measured phase."""

    started: float = 0.0
    ended: float = 0.0
    sent: int = 0
    acked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    duplicated: int = 0
    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # send time of each latency (--latency-log)
    bot_latencies: list[float] = field(default_factory=list)
    bot_unanswered: int = 0
    at_start: Usage = field(default_factory=lambda: Usage(0.0, 0.0, 0, 0))
    at_end: Usage = field(default_factory=lambda: Usage(0.0, 0.0, 0, 0))
    acked_ids: dict[str, str] = field(default_factory=dict)  # message id -> receiving side key
    delivered_ids: set[tuple[str, str]] = field(default_factory=set)  # (receiver key, message id)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        bot = sorted(self.bot_latencies)
        wall = max(1e-9, self.ended - self.started)
        server_cpu = self.at_end.server_cpu - self.at_start.server_cpu
        machine_ticks = max(1, self.at_end.machine_ticks - self.at_start.machine_ticks)
        lost = sum(1 for mid, to in self.acked_ids.items() if (to, mid) not in self.delivered_ids)
        return {
            "seconds": round(wall, 3),
            "sent": self.sent,
            "acked": self.acked,
            "delivered": self.delivered,
            "lost": lost,
            "duplicated": self.duplicated,
            "errors": dict(self.errors),
            "throughput": round(self.delivered / wall, 1),
            "server_cpu_pct": round(100 * server_cpu / wall, 1),
            # Server CPU per delivered message: steadier than throughput on a shared machine.
            "server_cpu_ms_per_msg": round(1000 * server_cpu / max(1, self.delivered), 3),
            # How long the server's threads were ready to run but had no core (summed over its
            # threads, % of the phase), and how busy the whole machine's cores were: a latency
            # tail with these high is the machine's, not the server's own work.
            "server_runqueue_wait_pct": round(
                100 * (self.at_end.server_wait - self.at_start.server_wait) / wall, 1
            ),
            "machine_busy_pct": round(
                100 * (self.at_end.machine_busy - self.at_start.machine_busy) / machine_ticks, 1
            ),
            "latency_ms": {f"p{q}": _ms(percentile(lat, q)) for q in (50, 95, 99)}
            | {"max": _ms(lat[-1] if lat else None)},
            "bot_answer_ms": {f"p{q}": _ms(percentile(bot, q)) for q in (50, 95, 99)}
            | {"count": len(bot), "unanswered": self.bot_unanswered},
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class Peer:
    """One WebSocket connection (investor or advisor) and what the run expects of it."""

    def __init__(self, run: Run, key: str, role: str, token: str):
        self.run, self.key, self.role, self.token = run, key, role, token
        self.ws: Any = None
        self.user_id = ""
        self.pending: dict[str, asyncio.Future[Event]] = {}
        self.cids = itertools.count(1)
        self.pacer = Pacer(run.args.frame_rate, run.args.frame_burst)
        self.reader: asyncio.Task[None] | None = None
        self.closed_code: int | None = None

    async def connect(self, ws_url: str) -> None:
        # Investors come from many addresses; the hub also limits frames per address.
        local = self.run.source_address(self.key)
        extra: dict[str, Any] = {"local_addr": (local, 0)} if local else {}
        self.ws = await websockets.connect(
            ws_url,
            open_timeout=30,
            max_size=2**22,
            ping_interval=None,
            compression=None,
            **extra,
        )
        await self.ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
        first = orjson.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if first.get("type") != "auth_ok":
            raise RuntimeError(f"auth refused for {self.key}: {first}")
        self.user_id = first["user"]["id"]
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                event = orjson.loads(raw)
                kind = event.get("type")
                if kind in ("ack", "error"):
                    future = self.pending.pop(event.get("cid", ""), None)
                    if future is not None and not future.done():
                        future.set_result(event)
                    elif kind == "error":
                        self.run.stray_errors[event.get("code", "?")] += 1
                else:
                    self.run.on_event(self, event)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.key} closed ({self.closed_code})"))
            self.pending.clear()

    async def request(self, frame: Event | Callable[[], Event], timeout: float = 30.0) -> Event:  # noqa: ASYNC109
        """Send a frame (or build it once the pacer lets it go) and return its ack or error."""
        await self.pacer.take()
        if callable(frame):
            frame = frame()
        cid = f"{self.key}-{next(self.cids)}"
        frame["cid"] = cid
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self.pending[cid] = future
        await self.ws.send(orjson.dumps(frame).decode())
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


@dataclass
class Chat:
    index: int
    investor: Peer
    conversation_id: str = ""
    advisor: Peer | None = None
    assigned: asyncio.Event = field(default_factory=asyncio.Event)
    bot_answered: asyncio.Event = field(default_factory=asyncio.Event)
    bot_asked_at: float = 0.0
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    turn: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # closed loop: whose turn next
    probe: bool = False  # stays with the bot: measures bot-answer latency under load


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.base = args.url.rstrip("/")
        self.ws_url = self.base.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        self.chats: list[Chat] = []
        self.probes: list[Chat] = []
        self.by_conversation: dict[str, Chat] = {}
        self.advisors: list[Peer] = []
        self.advisor_by_user: dict[str, Peer] = {}
        self.bot_latencies: list[float] = []
        self.stray_errors: Counter[str] = Counter()
        self.unparsed = 0
        self.stats: Stats | None = None
        self.all_phases: list[Stats] = []
        self.closed_loop = False
        self.setup_s = 0.0
        self._peers_placed = 0

    def source_address(self, key: str) -> str | None:
        """A loopback source address for connection `key`, a few connections per address."""
        if (
            self.args.ws_source_addresses <= 1
            or (urlsplit(self.base).hostname or "") != "127.0.0.1"
        ):
            return None
        self._peers_placed += 1
        return f"127.0.0.{2 + self._peers_placed % min(250, self.args.ws_source_addresses)}"

    # -- events from any connection -----------------------------------------------------------
    def on_event(self, peer: Peer, event: Event) -> None:
        kind = event.get("type")
        if kind == "message":
            self._on_message(peer, event)
        elif kind == "assigned" and peer.role == "advisor":
            conv = event["conversation"]
            chat = self.by_conversation.get(conv["id"])
            if chat is not None:
                chat.advisor = peer
                chat.assigned.set()

    def _on_message(self, peer: Peer, event: Event) -> None:
        chat = self.by_conversation.get(event["conversation_id"])
        if chat is None:
            return
        role = event.get("sender_role")
        if role == "bot" and peer.role == "investor":
            if chat.bot_asked_at and not chat.bot_answered.is_set():
                latency = time.time() - chat.bot_asked_at
                if chat.probe and self.stats is not None and self.stats.ended == 0:
                    self.stats.bot_latencies.append(latency)
                elif not chat.probe:
                    self.bot_latencies.append(latency)
                chat.bot_answered.set()
            return
        if role not in ("investor", "advisor") or role == peer.role:
            return  # the sender's own echo, or a system notice
        stamp = parse_stamp(event.get("text", ""))
        if stamp is None:
            self.unparsed += 1
            return
        now = time.time()
        for earlier in self.all_phases:
            if (peer.key, event["id"]) in earlier.delivered_ids:
                earlier.duplicated += 1
                return
        stats = self.stats
        if stats is None:
            return
        stats.delivered_ids.add((peer.key, event["id"]))
        if now <= stats.ended or stats.ended == 0:
            stats.delivered += 1
            stats.latencies.append(now - stamp[2])
            stats.sent_at.append(stamp[2])
        if self.closed_loop and stats.ended == 0:
            chat.turn.put_nowait(peer.role)

    # -- setup --------------------------------------------------------------------------------
    async def setup(self) -> None:
        t0 = time.monotonic()
        if self.args.bare:
            investor_tokens = [
                f"bare:investor:{i}:advisor:{self._advisor_for(i)}"
                for i in range(self.args.investors)
            ]
            advisor_tokens = [f"bare:advisor:{a}" for a in range(self.args.advisors)]
            probe_tokens: list[str] = []
        else:
            advisor_tokens, investor_tokens = await self._tokens()
            probe_tokens = investor_tokens[self.args.investors :]
            investor_tokens = investor_tokens[: self.args.investors]
        self.advisors = [
            Peer(self, f"a{a}", "advisor", tok) for a, tok in enumerate(advisor_tokens)
        ]
        await _bounded(
            self.args.connect_concurrency, [p.connect(self.ws_url) for p in self.advisors]
        )
        self.advisor_by_user = {p.user_id: p for p in self.advisors}
        self.chats = [
            Chat(i, Peer(self, f"i{i}", "investor", tok)) for i, tok in enumerate(investor_tokens)
        ]
        await _bounded(self.args.connect_concurrency, [self._open_chat(c) for c in self.chats])
        if not self.args.bare:
            self.probes = [
                Chat(len(self.chats) + k, Peer(self, f"p{k}", "investor", tok), probe=True)
                for k, tok in enumerate(probe_tokens)
            ]
            await _bounded(
                self.args.connect_concurrency, [self._open_probe(c) for c in self.probes]
            )
        missing = [c.index for c in self.chats if not c.assigned.is_set()]
        if missing:
            waited = [
                asyncio.wait_for(self.chats[i].assigned.wait(), self.args.assign_timeout)
                for i in missing
            ]
            results = await asyncio.gather(*waited, return_exceptions=True)
            unassigned = sum(1 for r in results if isinstance(r, BaseException))
            if unassigned:
                raise RuntimeError(
                    f"{unassigned} of {len(self.chats)} chats were never assigned an advisor"
                )
        self.setup_s = time.monotonic() - t0
        # The measuring process's own collector must not show up as the server's latency: the
        # heap built during setup (a thousand sockets and chats) is frozen out of collections,
        # and full ones run rarely (GC_THRESHOLDS). Unfrozen, four full collections of ~36 ms
        # each fell into a run's measured phases (docs/benchmarks/pipeline.md, fifth session).
        gc.collect()
        gc.freeze()
        # A progress line for whoever watches the run (a profiler waits for it); results go to stdout.
        print(f"setup done in {self.setup_s:.1f} s", file=sys.stderr, flush=True)

    def _advisor_for(self, i: int) -> int:
        return i // self.args.chats_per_advisor % max(1, self.args.advisors)

    async def _tokens(self) -> tuple[list[str], list[str]]:
        host = urlsplit(self.base).hostname or "127.0.0.1"
        sources: list[str | None] = [None]
        if host == "127.0.0.1" and self.args.source_addresses > 1:
            sources = [f"127.0.0.{k}" for k in range(2, 2 + self.args.source_addresses)]
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8, local_addr=(s, 0) if s else None)
            )
            for s in sources
        ]
        try:
            admin = await _post(
                sessions[0],
                f"{self.base}/api/login",
                {"username": self.args.admin_user, "password": self.args.admin_password},
            )
            run_tag = secrets.token_hex(3)
            names = [f"lg{run_tag}a{a}" for a in range(self.args.advisors)]
            password = "loadgen-" + secrets.token_hex(8)
            capacity = max(self.args.chats_per_advisor, 1)

            async def advisor(a: int) -> str:
                session = sessions[a % len(sessions)]
                await _post(
                    session,
                    f"{self.base}/api/admin/users",
                    {
                        "username": names[a],
                        "role": "advisor",
                        "password": password,
                        "groups": ["general"],
                        "capacity": capacity,
                        "name": f"压测顾问{a}",
                    },
                    token=admin["token"],
                )
                body = await _post(
                    session, f"{self.base}/api/login", {"username": names[a], "password": password}
                )
                return str(body["token"])

            async def investor(i: int) -> str:
                body = await _post(
                    sessions[i % len(sessions)], f"{self.base}/api/visitor", {"name": f"压测{i}"}
                )
                return str(body["token"])

            advisors = await _bounded(16, [advisor(a) for a in range(self.args.advisors)])
            wanted = self.args.investors + self.args.bot_probes
            investors = await _bounded(32, [investor(i) for i in range(wanted)])
            return advisors, investors
        finally:
            for s in sessions:
                await s.close()

    async def _open_chat(self, chat: Chat) -> None:
        await chat.investor.connect(self.ws_url)
        ack = await chat.investor.request({"type": "start", "channel": "web", "group": "general"})
        if ack.get("type") != "ack":
            raise RuntimeError(f"start refused: {ack}")
        chat.conversation_id = ack["conversation"]["id"]
        self.by_conversation[chat.conversation_id] = chat
        if self.args.bare:
            chat.advisor = self.advisors[self._advisor_for(chat.index)]
            chat.assigned.set()
            return
        chat.bot_asked_at = time.time()
        ack = await chat.investor.request(
            {"type": "send", "conversation_id": chat.conversation_id, "text": BOT_QUESTION}
        )
        if ack.get("type") != "ack":
            raise RuntimeError(f"bot question refused: {ack}")
        await asyncio.wait_for(chat.bot_answered.wait(), 30)
        ack = await chat.investor.request(
            {"type": "handoff", "conversation_id": chat.conversation_id}
        )
        if ack.get("type") != "ack":
            raise RuntimeError(f"handoff refused: {ack}")

    async def _open_probe(self, chat: Chat) -> None:
        await chat.investor.connect(self.ws_url)
        ack = await chat.investor.request({"type": "start", "channel": "web", "group": "general"})
        chat.conversation_id = ack["conversation"]["id"]
        self.by_conversation[chat.conversation_id] = chat

    async def probe_loop(self, chat: Chat, stats: Stats, offset: float) -> None:
        """Ask the bot one question every --bot-interval seconds while the phase runs."""
        await asyncio.sleep(offset)
        questions = itertools.cycle(PROBE_QUESTIONS)
        while stats.ended == 0:
            asked = time.monotonic()
            chat.bot_answered = asyncio.Event()

            def frame() -> Event:
                chat.bot_asked_at = time.time()
                return {
                    "type": "send",
                    "conversation_id": chat.conversation_id,
                    "text": next(questions),
                }

            try:
                await chat.investor.request(frame, timeout=self.args.ack_timeout)
                await asyncio.wait_for(chat.bot_answered.wait(), 10)
            except (TimeoutError, ConnectionError):
                stats.bot_unanswered += 1
            await asyncio.sleep(max(0.0, self.args.bot_interval - (time.monotonic() - asked)))

    def _start_probes(self, stats: Stats) -> list[asyncio.Task[None]]:
        n = max(1, len(self.probes))
        return [
            asyncio.create_task(self.probe_loop(c, stats, k * self.args.bot_interval / n))
            for k, c in enumerate(self.probes)
        ]

    # -- the measured phases -------------------------------------------------------------------
    async def send(self, chat: Chat, side: str) -> None:
        stats = self.stats
        assert stats is not None and chat.advisor is not None
        peer = chat.investor if side == "investor" else chat.advisor
        other = chat.advisor if side == "investor" else chat.investor
        lines = INVESTOR_LINES if side == "investor" else ADVISOR_LINES
        n = next(chat.counter)

        def frame() -> Event:
            # Stamped after pacing: latency counts from the moment the frame goes out.
            return {
                "type": "send",
                "conversation_id": chat.conversation_id,
                "text": stamp_text(lines[n % len(lines)], chat.index, n),
            }

        stats.sent += 1
        try:
            answer = await peer.request(frame, timeout=self.args.ack_timeout)
        except (TimeoutError, ConnectionError, websockets.ConnectionClosed) as exc:
            stats.errors[type(exc).__name__] += 1
            return
        if answer.get("type") == "ack":
            stats.acked += 1
            stats.acked_ids[answer["message_id"]] = other.key
        else:
            stats.errors[str(answer.get("code"))] += 1

    async def closed_phase(self, duration: float) -> Stats:
        self.closed_loop = True
        stats = self._begin()
        for chat in self.chats:
            chat.turn = asyncio.Queue()
            chat.turn.put_nowait("investor")  # the investor speaks first

        async def loop(chat: Chat) -> None:
            while stats.ended == 0:
                side = await chat.turn.get()  # the side that just received a message answers it
                if stats.ended:
                    return
                await self.send(chat, side)

        tasks = [asyncio.create_task(loop(c)) for c in self.chats] + self._start_probes(stats)
        await asyncio.sleep(duration)
        stats.ended = time.time()
        stats.at_end = Usage.now(self.args.server_pid)
        for c in self.chats:
            c.turn.put_nowait("stop")
        await self._drain(stats, tasks)
        self.closed_loop = False
        return stats

    async def open_phase(self, duration: float, rate: float) -> Stats:
        stats = self._begin()
        probes = self._start_probes(stats)
        tasks: set[asyncio.Task[None]] = set()
        order = itertools.cycle([(c, side) for side in ("investor", "advisor") for c in self.chats])
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < duration:
            due = int(elapsed * rate) + 1
            while n < due:
                chat, side = next(order)
                task = asyncio.create_task(self.send(chat, side))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(max(PACE_TICK_S, (n / rate) - (time.monotonic() - start)))
        stats.ended = time.time()
        stats.at_end = Usage.now(self.args.server_pid)
        await self._drain(stats, list(tasks) + probes)
        return stats

    def _begin(self) -> Stats:
        # No collections in the measuring process while it measures: in a half-load phase its
        # young collections took ~1 ms of CPU each and its middle ones 8-21 ms (270-340 and
        # 25-30 of them in 20 s), and every message arriving meanwhile was stamped that much
        # late. A phase is bounded (seconds, not minutes); what it leaves is collected after
        # its drain.
        gc.collect()
        gc.freeze()
        gc.disable()
        stats = Stats(started=time.time())
        stats.at_start = Usage.now(self.args.server_pid)
        self.stats = stats
        self.all_phases.append(stats)
        # Progress on stderr, so an outside profiler can start with a phase.
        print(f"phase {len(self.all_phases)} started", file=sys.stderr, flush=True)
        return stats

    async def _drain(self, stats: Stats, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for outstanding acks, then for deliveries of everything acked (the drain period)."""
        if tasks:
            await asyncio.wait(tasks, timeout=self.args.ack_timeout + 5)
        deadline = time.monotonic() + self.args.drain
        while time.monotonic() < deadline:
            if all((to, mid) in stats.delivered_ids for mid, to in stats.acked_ids.items()):
                break
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        gc.enable()

    async def close(self) -> None:
        if not self.args.bare:
            # Close every chat so the next run's advisors are not handed these once grace expires.
            async def finish(chat: Chat) -> None:
                if (
                    chat.conversation_id
                    and chat.investor.reader is not None
                    and not chat.investor.reader.done()
                ):
                    with contextlib.suppress(Exception):
                        await chat.investor.request(
                            {"type": "close", "conversation_id": chat.conversation_id}, timeout=10
                        )

            await _bounded(200, [finish(c) for c in self.chats + self.probes])
        peers = [c.investor for c in self.chats + self.probes] + self.advisors
        await _bounded(200, [p.close() for p in peers])


async def _post(
    session: aiohttp.ClientSession, url: str, body: Event, token: str | None = None
) -> Event:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for attempt in range(60):
        async with session.post(url, json=body, headers=headers) as response:
            data = await response.json(loads=orjson.loads)
            if response.status == 200:
                return dict(data)
            if response.status in (429, 503):  # rate limited, or `unavailable`: both say retry
                await asyncio.sleep(0.25 + 0.05 * attempt)
                continue
            raise RuntimeError(f"POST {url} -> {response.status} {data}")
    raise RuntimeError(f"POST {url}: still rate limited")


async def _bounded(limit: int, coros: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def process_cpu_seconds(pid: int, tree: list[int]) -> float:
    """User + system CPU seconds of another process and the processes it started (the hub's
    suggestion worker; `tree` is pid and its descendants), living or reaped (0 if unknown),
    from /proc/PID/stat."""
    ticks = 0
    for one in tree:
        try:
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and (for the server itself) cutime, cstime of children it has reaped.
        ticks += sum(int(v) for v in fields[11:15 if one == pid else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_runqueue_wait_seconds(tree: list[int]) -> float:
    """Seconds the threads of these processes spent runnable, waiting for a core (the second
    field of /proc/PID/task/TID/schedstat; 0 if unknown)."""
    waited = 0
    for one in tree:
        for path in glob.glob(f"/proc/{one}/task/*/schedstat"):
            try:
                with open(path) as f:
                    waited += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return waited / 1e9


def machine_cpu_ticks() -> tuple[int, int]:
    """Busy and total clock ticks of all cores since boot, from /proc/stat ((0, 0) if unknown)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


@dataclass(frozen=True)
class Usage:
    """CPU counters read at the start and the end of a phase."""

    server_cpu: float
    server_wait: float
    machine_busy: int
    machine_ticks: int

    @classmethod
    def now(cls, server_pid: int) -> Usage:
        tree = [server_pid, *_descendants(server_pid)] if server_pid > 0 else []
        return cls(
            process_cpu_seconds(server_pid, tree),
            process_runqueue_wait_seconds(tree),
            *machine_cpu_ticks(),
        )


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        children = []
        for task in glob.glob(f"/proc/{parent}/task/*/children"):  # started by any of its threads
            try:
                with open(task) as f:
                    children += [int(c) for c in f.read().split()]
            except OSError:
                continue
        found.extend(children)
        todo.extend(children)
    return found


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.advisors * args.chats_per_advisor < args.investors:
        raise SystemExit("advisors x chats-per-advisor must cover every investor")
    raise_file_limit(args.investors + args.advisors + 1024)
    load = Run(args)
    result: dict[str, Any] = {
        "mode": "bare" if args.bare else "hub",
        "url": args.url,
        "investors": args.investors,
        "advisors": args.advisors,
        "chats_per_advisor": args.chats_per_advisor,
    }
    try:
        await load.setup()
        bot = sorted(load.bot_latencies)
        result["setup_s"] = round(load.setup_s, 2)
        # The first question of every chat, all asked at once during setup: a burst, not steady load.
        result["setup_bot_answer_ms"] = {f"p{q}": _ms(percentile(bot, q)) for q in (50, 95, 99)} | {
            "count": len(bot)
        }
        phases: dict[str, Any] = {}
        cpu0, wall0 = _cpu_seconds(), time.monotonic()
        if args.rate:
            phases["open"] = (await load.open_phase(args.duration, args.rate)).summary() | {
                "rate": args.rate
            }
        else:
            closed = await load.closed_phase(args.duration)
            phases["closed"] = closed.summary()
            if args.also_half:
                half = args.half_rate or max(1.0, phases["closed"]["throughput"] / 2)
                phases["half"] = (await load.open_phase(args.duration, half)).summary() | {
                    "rate": half
                }
        result["loadgen_cpu_pct"] = round(
            100 * (_cpu_seconds() - cpu0) / (time.monotonic() - wall0), 1
        )
        result["phases"] = phases
        result["unparsed"] = load.unparsed
        # Errors that answer no frame (e.g. rate_limited): the refused frame is never acked.
        result["stray_errors"] = dict(load.stray_errors)
        result["lost"] = sum(p["lost"] for p in phases.values())
        result["duplicated"] = sum(p["duplicated"] for p in phases.values())
        if args.latency_log:
            write_latency_log(args.latency_log, zip(phases, load.all_phases, strict=True))
    finally:
        await load.close()
    return result


def write_latency_log(path: str, phases: Iterable[tuple[str, Stats]]) -> None:
    """One line per delivered message of each phase: when it was sent, and how long it took."""
    with open(path, "w", encoding="utf-8") as out:
        for name, stats in phases:
            for sent, latency in zip(stats.sent_at, stats.latencies, strict=True):
                out.write(f"{name} {sent:.6f} {latency * 1000:.3f}\n")


def print_human(result: dict[str, Any]) -> None:
    print(
        f"{result['mode']} {result['url']}: {result['investors']} investors, {result['advisors']} advisors "
        f"x {result['chats_per_advisor']} chats; setup {result.get('setup_s')} s; "
        f"loadgen CPU {result.get('loadgen_cpu_pct')}%"
    )
    if result.get("setup_bot_answer_ms", {}).get("count"):
        b = result["setup_bot_answer_ms"]
        print(
            f"  bot answer during setup burst: p50 {b['p50']} ms  p95 {b['p95']} ms  p99 {b['p99']} ms  (n={b['count']})"
        )
    if result.get("stray_errors"):
        print(f"  errors answering no frame: {result['stray_errors']}")
    for name, p in result.get("phases", {}).items():
        lat = p["latency_ms"]
        rate = f" at {p['rate']:.0f}/s" if "rate" in p else ""
        print(
            f"  {name}{rate}: {p['throughput']} delivered/s over {p['seconds']} s; sent {p['sent']} "
            f"acked {p['acked']} delivered {p['delivered']} lost {p['lost']} duplicated {p['duplicated']} "
            f"errors {p['errors']}; latency p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} max {lat['max']} ms"
        )
        if p["server_cpu_pct"]:
            print(
                f"    server CPU {p['server_cpu_pct']}% ({p['server_cpu_ms_per_msg']} ms per delivered message), "
                f"waiting for a core {p['server_runqueue_wait_pct']}%; machine cores busy {p['machine_busy_pct']}%"
            )
        b = p["bot_answer_ms"]
        if b["count"] or b["unanswered"]:
            print(
                f"    bot answer: p50 {b['p50']} p95 {b['p95']} p99 {b['p99']} ms (n={b['count']}, "
                f"unanswered {b['unanswered']})"
            )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default="http://127.0.0.1:8200")
    p.add_argument("--investors", type=int, default=100)
    p.add_argument("--advisors", type=int, default=10)
    p.add_argument("--chats-per-advisor", type=int, default=10)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of each measured phase")
    p.add_argument(
        "--rate", type=float, default=0.0, help="open loop at this many messages/s (0: closed loop)"
    )
    p.add_argument(
        "--also-half",
        action="store_true",
        help="after the closed loop, open loop at half its throughput",
    )
    p.add_argument(
        "--half-rate",
        type=float,
        default=0.0,
        help="with --also-half: use this rate instead of half",
    )
    p.add_argument(
        "--server-pid", type=int, default=0, help="report this process's CPU use per phase"
    )
    p.add_argument(
        "--bare",
        action="store_true",
        help="talk to scripts/bare_relay.py (no HTTP, no bot, no routing)",
    )
    p.add_argument(
        "--bot-probes",
        type=int,
        default=-1,
        help="extra investors that stay with the bot and ask it questions (default: investors/20)",
    )
    p.add_argument(
        "--bot-interval", type=float, default=1.0, help="seconds between one probe's questions"
    )
    p.add_argument(
        "--drain", type=float, default=5.0, help="seconds to wait for deliveries after a phase"
    )
    p.add_argument("--ack-timeout", type=float, default=30.0)
    p.add_argument("--assign-timeout", type=float, default=60.0)
    p.add_argument(
        "--frame-rate", type=float, default=19.0, help="client frames/s per connection (0: unpaced)"
    )
    p.add_argument("--frame-burst", type=float, default=38.0)
    p.add_argument("--connect-concurrency", type=int, default=64)
    p.add_argument(
        "--source-addresses", type=int, default=8, help="loopback addresses to spread HTTP over"
    )
    p.add_argument(
        "--ws-source-addresses",
        type=int,
        default=200,
        help="loopback addresses to spread WebSocket connections over (the hub limits frames per address)",
    )
    p.add_argument("--admin-user", default="admin")
    p.add_argument("--admin-password", default=os.environ.get("LOADGEN_ADMIN_PASSWORD", "demo1234"))
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--latency-log",
        default="",
        help="write 'phase send_time latency_ms' per delivered message to this file",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.bot_probes < 0:
        args.bot_probes = 0 if args.bare else max(1, args.investors // 20)
    gc.set_threshold(*GC_THRESHOLDS)
    if args.uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_human(result)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
