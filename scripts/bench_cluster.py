"""What crossing nodes costs: delivery latency through one hub node vs. split across two nodes.

Starts two real hub processes on one fresh PostgreSQL database and one Redis (its own key
prefix, deleted afterwards). The same conversations run in alternating phases: "single" with
investors and advisors on node A (the baseline, measured in the same run), "split" with the
investors on A and their advisors on B, so every message crosses Redis, and "paired" with each
advisor connected on both nodes at once, so the very same message is timed locally and across
Redis (the headline delta: machine noise from other work cancels out). Latency is investor
send to advisor receive, on one clock (one benchmark process).

    python scripts/bench_cluster.py                       # modest defaults
    python scripts/bench_cluster.py --conversations 15 --messages 200 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import websockets

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = os.environ.get("CHATSERVER_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("CHATSERVER_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("CHATSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADVISORS = ("advisor1", "advisor2", "advisor3")


class Client:
    """A bare WebSocket client that timestamps every event on arrival."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.ws: Any = None
        self.arrivals: dict[str, float] = {}  # message text -> perf_counter at arrival
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = iter(range(1, 10**9))
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        self.ws = await websockets.connect(
            self.url.replace("http://", "ws://") + "/ws", max_size=2**22
        )
        await self.ws.send(json.dumps({"type": "auth", "token": self.token}))
        first = json.loads(await self.ws.recv())
        assert first["type"] == "auth_ok", first
        self.user = first["user"]
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            event = json.loads(raw)
            if event.get("type") == "message":
                self.arrivals[event["text"]] = now
            cid = event.get("cid")
            if cid in self.waiting:
                self.waiting.pop(cid).set_result(event)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        cid = f"{uuid.uuid4().hex[:8]}-{next(self.ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[cid] = future
        await self.ws.send(json.dumps({**frame, "cid": cid}))
        answer = await asyncio.wait_for(future, 30)
        assert answer["type"] == "ack", answer
        return answer

    async def close(self) -> None:
        await self.ws.close()
        if self.reader:
            await asyncio.gather(self.reader, return_exceptions=True)


def token(url: str, username: str | None) -> str:
    if username:
        path, body = "/api/login", {"username": username, "password": "demo1234"}
    else:
        path, body = "/api/visitor", {"name": "压测访客"}
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["token"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(
    port: int, data_dir: Path, database_url: str, prefix: str
) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "node.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chatserver", "--port", str(port), "--data-dir", str(data_dir),
             "--database-url", database_url, "--redis-url", REDIS_URL, "--redis-prefix", prefix,
             "--no-log-json", "--log-level", "WARNING",
             # Bench advisors never answer: without this the no-answer rule would move chats
             # to other advisors mid-run and the workload would change under the measurement.
             "--no-answer-timeout-s", "86400", "serve"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


async def phase(
    investors: list[tuple[Client, str]],
    receivers: list[dict[str, Client]],
    owner: dict[str, str],
    messages: int,
    gap_s: float,
    tag: str,
) -> list[list[float]]:
    """Every investor sends `messages` texts; for each receiver set (advisor id -> connection),
    the send-to-arrival latency (ms) of every message, in the same message order."""
    sent_at: dict[str, tuple[float, str]] = {}

    async def talk(investor: Client, conv_id: str) -> None:
        await asyncio.sleep(random.uniform(0, gap_s))  # spread the conversations out
        for n in range(messages):
            text = f"{tag}-{conv_id[:8]}-{n} 请问两融利率多少"
            sent_at[text] = (time.perf_counter(), owner[conv_id])
            await investor.request({"type": "send", "conversation_id": conv_id, "text": text})
            await asyncio.sleep(gap_s)

    await asyncio.gather(*(talk(i, c) for i, c in investors))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(  # noqa: ASYNC110 - a dict the readers fill
        t in r[a].arrivals for r in receivers for t, (_, a) in sent_at.items()
    ):
        await asyncio.sleep(0.05)
    out = []
    for r in receivers:
        latencies = []
        for text, (at, advisor_id) in sent_at.items():
            arrived = r[advisor_id].arrivals.get(text)
            if arrived is None:
                raise RuntimeError(f"{text} never reached its advisor")
            latencies.append((arrived - at) * 1000)
        out.append(latencies)
    return out


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


async def connect_advisors(url: str) -> dict[str, Client]:
    clients = {}
    for name in ADVISORS:
        c = await Client(url, await asyncio.to_thread(token, url, name)).open()
        clients[c.user["id"]] = c
    return clients


async def bus_hop(count: int) -> list[float]:
    """The bare Redis hop, without hub work: one RedisBus publishes, another (one loop, so no
    process scheduling in between) receives; milliseconds per event."""
    sys.path.insert(0, str(ROOT))
    from chatserver.redis_bus import RedisBus

    prefix = f"csbench:{uuid.uuid4().hex[:8]}:"
    sender, receiver = RedisBus(REDIS_URL, prefix=prefix), RedisBus(REDIS_URL, prefix=prefix)
    await sender.start()
    await receiver.start()
    arrived: dict[str, float] = {}
    await receiver.subscribe(
        "user:bench", lambda payload: arrived.setdefault(payload, time.perf_counter())
    )
    await asyncio.sleep(0.2)
    sent: dict[str, float] = {}
    for n in range(count):
        key = f'{{"n": {n}}}'
        sent[key] = time.perf_counter()
        await sender.publish("user:bench", key)
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.5)
    await sender.close()
    await receiver.close()
    return [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"cs_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:5432/{name}"
    prefix = f"csbench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    a_url, b_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    a = start_node(int(a_url.rsplit(":", 1)[1]), tmp / "a", database_url, prefix)
    procs = [a]
    try:
        await asyncio.to_thread(wait_ready, a_url, a)
        b = start_node(int(b_url.rsplit(":", 1)[1]), tmp / "b", database_url, prefix)
        procs.append(b)
        await asyncio.to_thread(wait_ready, b_url, b)
        advisors = await connect_advisors(a_url)
        investors: list[tuple[Client, str]] = []
        owner: dict[str, str] = {}
        for _ in range(args.conversations):
            inv = await Client(a_url, await asyncio.to_thread(token, a_url, None)).open()
            conv = (await inv.request({"type": "start", "group": "general"}))["conversation"]
            await inv.request({"type": "handoff", "conversation_id": conv["id"]})
            investors.append((inv, conv["id"]))
        deadline = time.monotonic() + 30
        while len(owner) < len(investors) and time.monotonic() < deadline:
            rows = await (
                conn := await asyncpg.connect(host=PG_HOST, user=PG_USER, database=name)
            ).fetch("SELECT id, advisor_id FROM conversations WHERE state = 'assigned'")
            await conn.close()
            owner = {r["id"]: r["advisor_id"] for r in rows}
            await asyncio.sleep(0.2)
        if len(owner) < len(investors):
            raise RuntimeError(
                f"only {len(owner)} of {len(investors)} chats were assigned (capacity?)"
            )
        results: dict[str, list[float]] = {
            "single": [],
            "split": [],
            "paired_a": [],
            "paired_b": [],
        }
        on_b: dict[str, Client] = {}
        for round_ in range(args.rounds):
            for mode in ("single", "split", "paired"):
                for c in [*advisors.values(), *on_b.values()]:
                    await c.close()
                advisors = await connect_advisors(b_url if mode == "split" else a_url)
                on_b = await connect_advisors(b_url) if mode == "paired" else {}
                await asyncio.sleep(0.5)
                got = await phase(
                    investors,
                    [advisors, on_b] if on_b else [advisors],
                    owner,
                    args.messages,
                    args.gap_ms / 1000,
                    f"r{round_}{mode}",
                )
                if mode == "paired":
                    results["paired_a"] += got[0]
                    results["paired_b"] += got[1]
                else:
                    results[mode] += got[0]
        for c in [*advisors.values(), *on_b.values(), *(i for i, _ in investors)]:
            await c.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        r = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(match=prefix + "*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()
    hop = await bus_hop(2000)
    out: dict[str, Any] = {
        "bus_hop_p50_ms": round(pct(hop, 50), 3),
        "bus_hop_p99_ms": round(pct(hop, 99), 3),
        "conversations": args.conversations,
        "messages_per_phase": args.messages,
        "rounds": args.rounds,
        "samples": {k: len(v) for k, v in results.items()},
    }
    for key, values in results.items():
        out[f"{key}_p50_ms"] = round(pct(values, 50), 3)
        out[f"{key}_p99_ms"] = round(pct(values, 99), 3)
    # The headline: the same messages, seen by the advisor's connection on node A (local) and
    # on node B (through Redis) at the same moment, so machine noise cancels out.
    out["p50_delta_ms"] = round(out["paired_b_p50_ms"] - out["paired_a_p50_ms"], 3)
    out["p99_delta_ms"] = round(out["paired_b_p99_ms"] - out["paired_a_p99_ms"], 3)
    extra = [b - a for a, b in zip(results["paired_a"], results["paired_b"], strict=True)]
    out["per_message_extra_p50_ms"] = round(pct(extra, 50), 3)
    out["per_message_extra_p99_ms"] = round(pct(extra, 99), 3)
    # Separate phases (advisors only on A, then only on B): same workload, different moments.
    out["phase_p50_delta_ms"] = round(out["split_p50_ms"] - out["single_p50_ms"], 3)
    out["phase_p99_delta_ms"] = round(out["split_p99_ms"] - out["single_p99_ms"], 3)
    out["target_met"] = out["p50_delta_ms"] <= 2.0 and out["p99_delta_ms"] <= 10.0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--conversations", type=int, default=9, help="chats (3 demo advisors, capacity 5 each)"
    )
    parser.add_argument(
        "--messages", type=int, default=40, help="investor messages per chat per phase"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="single/split/paired phase triples, alternating"
    )
    parser.add_argument(
        "--gap-ms", type=float, default=100, help="pause between one investor's messages"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.gap_ms < 60:
        parser.error("--gap-ms below 60 exceeds the hub's per-connection frame limit (20/s)")
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{out['conversations']} conversations, {args.messages} messages each per phase, {args.rounds} rounds"
    )
    rows = (
        ("single", "phase: advisors on A (baseline)"),
        ("split", "phase: advisors on B"),
        ("paired_a", "paired: advisor conn on A (baseline)"),
        ("paired_b", "paired: advisor conn on B"),
    )
    for key, label in rows:
        print(
            f"{label:<38} p50 {out[key + '_p50_ms']:8.2f} ms  p99 {out[key + '_p99_ms']:8.2f} ms"
            f"  ({out['samples'][key]} messages)"
        )
    print(
        f"crossing nodes adds (paired, same messages): p50 {out['p50_delta_ms']:+.2f} ms  "
        f"p99 {out['p99_delta_ms']:+.2f} ms  (target <= 2 / <= 10 ms: "
        f"{'met' if out['target_met'] else 'NOT met'})"
    )
    print(
        f"  per-message extra B-A: p50 {out['per_message_extra_p50_ms']:+.2f} ms  "
        f"p99 {out['per_message_extra_p99_ms']:+.2f} ms"
    )
    print(
        f"crossing nodes adds (separate phases, noisier): p50 {out['phase_p50_delta_ms']:+.2f} ms  "
        f"p99 {out['phase_p99_delta_ms']:+.2f} ms"
    )
    print(
        f"bare Redis hop (RedisBus to RedisBus, no hub work): p50 {out['bus_hop_p50_ms']:.2f} ms  "
        f"p99 {out['bus_hop_p99_ms']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
