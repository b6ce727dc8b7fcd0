"""Memory per idle connection: opens N authenticated investor WebSockets to a fresh hub.

Prints the hub process's resident memory before and after (VmRSS from /proc/PID/status) and the
difference per connection; `--json` prints one object with `kb_per_connection`.

    python scripts/bench_connections.py                    # 10,000 connections
    python scripts/bench_connections.py --connections 500 --json

Each connection is a distinct visitor (POST /api/visitor), spread over loopback source addresses
127.0.0.2… because the hub limits HTTP requests per address. The baseline is taken after every
token exists and after a warm-up of a few connections opened and closed, so the delta is what
the connections themselves hold.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_pipeline import machine, wait_ready  # noqa: E402


def _raise_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


async def visitor_tokens(base: str, n: int, sources: int) -> list[str]:
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8, local_addr=(f"127.0.0.{2 + k}", 0))
        )
        for k in range(sources)
    ]
    try:

        async def one(i: int) -> str:
            session = sessions[i % sources]
            for attempt in range(100):
                async with session.post(
                    f"{base}/api/visitor", json={"name": f"连接{i}"}
                ) as response:
                    if response.status == 200:
                        return str((await response.json(loads=orjson.loads))["token"])
                    if response.status != 429:
                        raise RuntimeError(
                            f"visitor token: {response.status} {await response.text()}"
                        )
                await asyncio.sleep(0.2 + 0.05 * attempt)
            raise RuntimeError("visitor token: still rate limited")

        gate = asyncio.Semaphore(8 * sources)

        async def gated(i: int) -> str:
            async with gate:
                return await one(i)

        return list(await asyncio.gather(*(gated(i) for i in range(n))))
    finally:
        for s in sessions:
            await s.close()


async def open_connection(ws_url: str, token: str, source: str | None = None) -> Any:
    extra: dict[str, Any] = {"local_addr": (source, 0)} if source else {}
    ws = await websockets.connect(
        ws_url,
        open_timeout=20,
        ping_interval=None,
        compression=None,
        max_size=2**20,
        **extra,
    )
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    first = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
    if first.get("type") != "auth_ok":
        raise RuntimeError(f"auth refused: {first}")
    return ws


async def measure(args: argparse.Namespace, pid: int, base: str) -> dict[str, Any]:
    ws_url = base.replace("http://", "ws://") + "/ws"
    t0 = time.monotonic()
    tokens = await visitor_tokens(base, args.connections + args.warmup, args.source_addresses)
    tokens_s = time.monotonic() - t0
    warm = [await open_connection(ws_url, tok, "127.0.0.2") for tok in tokens[: args.warmup]]
    for ws in warm:
        await ws.close()
    await asyncio.sleep(args.settle)
    before = rss_kb(pid)
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def gated(index: int, token: str) -> Any:
        # Many addresses, as real investors have: the hub limits upgrades per address too.
        source = f"127.0.0.{2 + index % args.source_addresses}"
        async with gate:
            for attempt in range(3):  # a SYN dropped by a full listen backlog is worth a retry
                try:
                    return await open_connection(ws_url, token, source)
                except (TimeoutError, OSError):
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    t1 = time.monotonic()
    todo = tokens[args.warmup :]
    half = len(todo) // 2
    conns = list(await asyncio.gather(*(gated(i, tok) for i, tok in enumerate(todo[:half]))))
    await asyncio.sleep(args.settle)
    middle = rss_kb(pid)
    conns += await asyncio.gather(*(gated(half + i, tok) for i, tok in enumerate(todo[half:])))
    open_s = time.monotonic() - t1
    await asyncio.sleep(args.settle)
    after = rss_kb(pid)
    for ws in conns:
        await ws.close()
    return {
        "connections": len(conns),
        "rss_before_kb": before,
        "rss_half_kb": middle,
        "rss_after_kb": after,
        "kb_per_connection": round((after - before) / max(1, len(conns)), 2),
        # The second half alone: memory freed during setup and reused by the first connections
        # makes the overall figure look smaller than what each new connection costs.
        "kb_per_connection_marginal": round((after - middle) / max(1, len(conns) - half), 2),
        "tokens_s": round(tokens_s, 1),
        "open_s": round(open_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading RSS")
    p.add_argument("--port", type=int, default=8230)
    p.add_argument("--connect-concurrency", type=int, default=64)
    p.add_argument(
        "--source-addresses",
        type=int,
        default=250,
        help="loopback source addresses (HTTP and WebSocket)",
    )
    p.add_argument("--src", default=str(ROOT), help="run the hub from this source tree")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    _raise_limit()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    data_dir = Path(tempfile.mkdtemp(prefix="bench_connections_", dir="/tmp"))
    base = f"http://127.0.0.1:{args.port}"
    cmd = [
        sys.executable,
        "-m",
        "chatserver",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--data-dir",
        str(data_dir),
        "--no-log-json",
        "--log-level",
        "WARNING",
        "serve",
    ]
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(
        cmd, cwd=args.src, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_raise_limit
    )
    try:
        wait_ready(base + "/readyz", proc)
        result = asyncio.run(measure(args, proc.pid, base))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    report = {**result, "date": started, "machine": machine()}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(
            f"{result['connections']} idle authenticated investor connections; {started}; {report['machine']}"
        )
        print(
            f"hub RSS {result['rss_before_kb']} kB -> {result['rss_after_kb']} kB; "
            f"tokens in {result['tokens_s']} s, connections opened in {result['open_s']} s"
        )
        print(
            f"kb_per_connection={result['kb_per_connection']} "
            f"(second half alone: {result['kb_per_connection_marginal']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
