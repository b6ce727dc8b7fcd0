"""Soak test: a steady chat load against a real hub process, watching it for leaks.

Starts `python -m chatserver serve` (or attaches to --pid/--url), runs investors who chat, hand
off, close and reconnect, and advisors who answer, for --duration seconds. Every --interval it
prints the hub's RSS and open file descriptors (/proc/PID) and its asyncio task count (the
`chatserver_asyncio_tasks` gauge at /metrics). The first sample after warm-up is the baseline;
the last samples are compared with it. Not part of CI:

    .venv/bin/python scripts/soak.py --duration 240 --interval 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatserver.client import HubClient, HubError, get_token  # noqa: E402

QUESTIONS = (
    "开户需要什么材料",
    "两融开通条件是什么",
    "佣金怎么收",
    "基金赎回多久到账",
    "怎么修改手机号",
    "转账失败怎么办",
    "我想咨询一下我的账户问题",
    "新股申购规则",
)


@dataclass
class LoadStats:
    acks: int = 0
    errors: int = 0
    conversations: int = 0
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)

    def take_latencies(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else -1


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values)


async def investor(
    url: str, number: int, stats: LoadStats, stop: asyncio.Event, gap_s: float
) -> None:
    rng = random.Random(number)
    token, _ = await get_token(url, name=f"浸泡{number}")
    while not stop.is_set():
        try:
            client = await HubClient.connect(url, token)
        except (OSError, HubError):
            stats.errors += 1
            await asyncio.sleep(1)
            continue
        stats.reconnects += 1
        try:
            conv = await client.start()
            stats.conversations += 1
            for _ in range(rng.randint(2, 5)):
                start = time.perf_counter()
                await client.say(conv["id"], rng.choice(QUESTIONS))
                stats.latencies.append(time.perf_counter() - start)
                stats.acks += 1
                await asyncio.sleep(gap_s * rng.uniform(0.5, 1.5))
                if stop.is_set():
                    break
            if rng.random() < 0.3:
                await client.request({"type": "handoff", "conversation_id": conv["id"]})
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await client.next_event(
                        lambda e: e.get("type") == "message" and e.get("sender_role") == "advisor",
                        timeout=5,
                    )
            await client.request({"type": "close", "conversation_id": conv["id"]})
            await client.request(
                {"type": "rate", "conversation_id": conv["id"], "score": rng.randint(3, 5)}
            )
        except (HubError, TimeoutError, ConnectionError):
            stats.errors += 1
        finally:
            await client.close()


async def advisor(url: str, username: str, stats: LoadStats, stop: asyncio.Event) -> None:
    token, _ = await get_token(url, username, "demo1234")
    client = await HubClient.connect(url, token)
    try:
        while not stop.is_set():
            try:
                event = await client.next_event("assigned", timeout=1)
            except TimeoutError:
                client.events.clear()  # suggestions, pool offers: nothing the soak needs to keep
                continue
            conv_id = event["conversation"]["id"]
            try:
                await client.say(conv_id, "您好，我来帮您看一下这个问题。")
                stats.acks += 1
            except HubError:
                stats.errors += 1
    finally:
        await client.close()


async def sample(url: str, pid: int, stats: LoadStats, started: float) -> dict[str, float]:
    tasks, conns = (
        await asyncio.to_thread(metric, url, "chatserver_asyncio_tasks"),
        await asyncio.to_thread(metric, url, "chatserver_connections"),
    )
    lat = stats.take_latencies()
    return {
        "t_s": time.monotonic() - started,
        "rss_mib": rss_kib(pid) / 1024,
        "fds": open_fds(pid),
        "tasks": tasks,
        "connections": conns,
        "acks": stats.acks,
        "errors": stats.errors,
        "ack_p50_ms": statistics.median(lat) * 1e3 if lat else float("nan"),
        "ack_p99_ms": (statistics.quantiles(lat, n=100)[98] if len(lat) >= 2 else float("nan"))
        * 1e3,
    }


def start_hub(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="soak-")
    cmd = [
        sys.executable,
        "-m",
        "chatserver",
        "--port",
        str(port),
        "--data-dir",
        data_dir,
        "--log-level",
        "WARNING",
    ]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    log = open(Path(data_dir) / "hub.log", "wb")  # noqa: SIM115 - the hub writes to it until it stops
    proc = subprocess.Popen(
        [*cmd, "serve"], stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[1]
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    print(f"hub pid {proc.pid} on {url}, data dir {data_dir}", flush=True)
                    return proc, url
        if proc.poll() is not None:
            raise SystemExit(f"hub exited: see {data_dir}/hub.log")
        time.sleep(0.2)
    raise SystemExit("hub did not become ready")


async def main(args: argparse.Namespace) -> int:
    proc, url = (None, args.url) if args.url else start_hub(args)
    pid = args.pid or (proc.pid if proc else 0)
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %z')}; nproc {os.cpu_count()}; python {platform.python_version()};"
        f" {args.clients} investors, {len(args.advisors)} advisors, ~{1 / args.gap:.1f} msg/s each,"
        f" {args.duration:.0f} s, sample every {args.interval:.0f} s",
        flush=True,
    )
    stats, stop = LoadStats(), asyncio.Event()
    started = time.monotonic()
    workers = [asyncio.create_task(advisor(url, name, stats, stop)) for name in args.advisors]
    workers += [
        asyncio.create_task(investor(url, n, stats, stop, args.gap)) for n in range(args.clients)
    ]
    samples = []
    header = f"{'t_s':>6} {'rss_mib':>8} {'fds':>5} {'tasks':>6} {'conns':>6} {'acks':>7} {'errors':>6} {'p50_ms':>7} {'p99_ms':>7}"
    print(header, flush=True)
    try:
        while time.monotonic() - started < args.duration:
            await asyncio.sleep(args.interval)
            row = await sample(url, pid, stats, started)
            samples.append(row)
            print(
                f"{row['t_s']:6.0f} {row['rss_mib']:8.1f} {row['fds']:5.0f} {row['tasks']:6.0f} {row['connections']:6.0f}"
                f" {row['acks']:7.0f} {row['errors']:6.0f} {row['ack_p50_ms']:7.2f} {row['ack_p99_ms']:7.2f}",
                flush=True,
            )
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    return report(samples, stats)


def report(samples: list[dict[str, float]], stats: LoadStats) -> int:
    if len(samples) < 4:
        print("too few samples to judge; run longer")
        return 1
    base = samples[1]  # the first sample is warm-up (imports, caches, first connections)
    tail = samples[len(samples) // 2 :]
    print(
        f"baseline (t={base['t_s']:.0f}s): rss {base['rss_mib']:.1f} MiB, fds {base['fds']:.0f}, tasks {base['tasks']:.0f}"
    )
    flat = True
    for key, allowed in (("rss_mib", 0.15), ("fds", 0.15), ("tasks", 0.15)):
        last_half_max = max(s[key] for s in tail)
        growth = (last_half_max - base[key]) / base[key] if base[key] else 0.0
        verdict = "flat" if growth <= allowed else "GROWING"
        flat &= verdict == "flat"
        print(
            f"  {key}: baseline {base[key]:.1f}, max over last half {last_half_max:.1f} ({growth:+.1%}; allowed +{allowed:.0%}) {verdict}"
        )
    print(
        f"totals: {stats.acks} acks, {stats.errors} errors, {stats.conversations} conversations, {stats.reconnects} connections"
    )
    return 0 if flat else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=600.0, help="seconds of load (default 10 minutes)"
    )
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--clients", type=int, default=30, help="investors chatting at once")
    parser.add_argument(
        "--gap", type=float, default=1.0, help="mean seconds between one investor's messages"
    )
    parser.add_argument("--advisors", nargs="*", default=["advisor1", "advisor2", "advisor3"])
    parser.add_argument(
        "--database-url", default="", help="hub database (default: SQLite in a temp dir)"
    )
    parser.add_argument(
        "--url", default="", help="attach to a running hub instead of starting one (needs --pid)"
    )
    parser.add_argument(
        "--pid", type=int, default=0, help="the attached hub's process id, for RSS and fds"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
