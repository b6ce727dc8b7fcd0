"""Pipeline benchmark: the hub against the bare relay, one after the other, at the same workload.

Starts the hub (fresh data dir, or a fresh PostgreSQL database) and runs scripts/loadgen.py against
it: closed loop for the maximum throughput, then open loop at half of it (delivery and bot-answer
p99). Then starts scripts/bare_relay.py and runs the same loadgen: closed loop, then open loop at
the hub's half rate. Prints a table and the line
`pipeline/bare throughput=R p99_ms=X bare_p99_ms=Y lost=0 duplicated=0`, or one JSON object.

    python scripts/bench_pipeline.py                       # 1,000 investors, 100 advisors x 10
    python scripts/bench_pipeline.py --investors 100 --advisors 10 --duration 5
    python scripts/bench_pipeline.py --postgres            # a fresh database on 127.0.0.1:5432
    python scripts/bench_pipeline.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _raise_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


@contextmanager
def server(cmd: list[str], ready_url: str, log_path: Path, cwd: Path) -> Iterator[int]:
    """Run a server process for the duration of the block; yields its pid."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_raise_limit
        )
        try:
            wait_ready(ready_url, proc)
            yield proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def loadgen(args: argparse.Namespace, url: str, pid: int, *extra: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(SCRIPTS / "loadgen.py"),
        "--url",
        url,
        "--json",
        "--server-pid",
        str(pid),
        "--investors",
        str(args.investors),
        "--advisors",
        str(args.advisors),
        "--chats-per-advisor",
        str(args.chats_per_advisor),
        "--duration",
        str(args.duration),
        "--drain",
        str(args.drain),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration * 4 + 900)
    if not done.stdout.strip():
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _autovacuum(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", "", 1))
    try:
        return str(await conn.fetchval("SHOW autovacuum"))
    finally:
        await conn.close()


def autovacuum(url: str) -> str:
    """The server's autovacuum setting, reported with the figures: off, the tables are never
    analysed and the hub's figures depend on its connections planning each statement afresh
    (docs/benchmarks/pipeline.md, sixth and seventh sessions); PostgreSQL's default, and any
    production server's, is on."""
    return asyncio.run(_autovacuum(url))


@contextmanager
def fresh_postgres() -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_hub(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench_pipeline_", dir="/tmp"))
    try:
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
        ]
        if database_url:
            cmd += ["--database-url", database_url]
        if args.redis_url:
            cmd += ["--redis-url", args.redis_url]
        cmd.append("serve")
        url = f"http://127.0.0.1:{args.port}"
        with server(cmd, url + "/readyz", data_dir / "server.log", Path(args.src)) as pid:
            result = loadgen(args, url, pid, "--also-half")
        return result
    finally:
        log = data_dir / "server.log"
        if log.exists():
            shutil.copy(log, f"/tmp/bench_pipeline_hub_{args.port}.log")
        shutil.rmtree(data_dir, ignore_errors=True)


def run_bare(args: argparse.Namespace, half_rate: float) -> dict[str, Any]:
    cmd = [sys.executable, str(SCRIPTS / "bare_relay.py"), "--port", str(args.bare_port)]
    url = f"http://127.0.0.1:{args.bare_port}"
    log = Path(f"/tmp/bench_pipeline_bare_{args.bare_port}.log")
    with server(cmd, url + "/healthz", log, ROOT) as pid:
        return loadgen(args, url, pid, "--bare", "--also-half", "--half-rate", f"{half_rate:.1f}")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def summarise(hub: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    hc, hh = hub["phases"]["closed"], hub["phases"]["half"]
    bc, bh = bare["phases"]["closed"], bare["phases"]["half"]
    lost = hub["lost"] + bare["lost"]
    duplicated = hub["duplicated"] + bare["duplicated"]
    return {
        "throughput_ratio": round(hc["throughput"] / max(1e-9, bc["throughput"]), 3),
        "p99_ms": hh["latency_ms"]["p99"],
        "bare_p99_ms": bh["latency_ms"]["p99"],
        "bot_p99_ms": hh["bot_answer_ms"]["p99"],
        "lost": lost,
        "duplicated": duplicated,
        "hub_throughput": hc["throughput"],
        "bare_throughput": bc["throughput"],
        "half_rate": hh.get("rate"),
        "hub_cpu_ms_per_msg": hc["server_cpu_ms_per_msg"],
        "bare_cpu_ms_per_msg": bc["server_cpu_ms_per_msg"],
        # The half-load phase's share of the machine: a tail with the cores near full is the
        # machine's (hub and load generator share it), not the hub's own work.
        "half_hub_cpu_pct": hh["server_cpu_pct"],
        "half_hub_runqueue_wait_pct": hh["server_runqueue_wait_pct"],
        "half_machine_busy_pct": hh["machine_busy_pct"],
    }


def table(hub: dict[str, Any], bare: dict[str, Any]) -> str:
    rows = [
        (
            "",
            "throughput/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "server CPU %",
            "CPU ms/msg",
            "wait %",
            "machine %",
            "bot p99 ms",
            "sent",
            "acked",
            "delivered",
            "lost",
            "dup",
            "errors",
        )
    ]
    for name, result in (("hub", hub), ("bare", bare)):
        for phase, p in result["phases"].items():
            label = f"{name} {phase}" + (f" @{p['rate']:.0f}/s" if "rate" in p else "")
            lat, bot = p["latency_ms"], p["bot_answer_ms"]
            rows.append(
                (
                    label,
                    p["throughput"],
                    lat["p50"],
                    lat["p95"],
                    lat["p99"],
                    p["server_cpu_pct"],
                    p["server_cpu_ms_per_msg"],
                    p["server_runqueue_wait_pct"],
                    p["machine_busy_pct"],
                    bot["p99"] if bot["count"] else "-",
                    p["sent"],
                    p["acked"],
                    p["delivered"],
                    p["lost"],
                    p["duplicated"],
                    sum(p["errors"].values()),
                )
            )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--investors", type=int, default=1000)
    p.add_argument("--advisors", type=int, default=100)
    p.add_argument("--chats-per-advisor", type=int, default=10)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each measured phase")
    p.add_argument("--drain", type=float, default=5.0)
    p.add_argument("--port", type=int, default=8220)
    p.add_argument("--bare-port", type=int, default=8221)
    p.add_argument(
        "--database-url",
        default="",
        help="pass through to the hub (default: SQLite in a fresh dir)",
    )
    p.add_argument(
        "--postgres", action="store_true", help="a fresh database on 127.0.0.1:5432, dropped after"
    )
    p.add_argument("--redis-url", default="", help="pass through to the hub (the Redis bus)")
    p.add_argument(
        "--src", default=str(ROOT), help="run the hub from this source tree (A/B comparisons)"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    _raise_limit()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    vacuum = None
    if args.postgres:
        with fresh_postgres() as url:
            vacuum = autovacuum(url)
            hub = run_hub(args, url)
    else:
        if args.database_url.startswith("postgres"):
            vacuum = autovacuum(args.database_url)
        hub = run_hub(args, args.database_url)
    bare = run_bare(args, hub["phases"]["half"]["rate"])
    summary = summarise(hub, bare)
    database = (
        "postgresql" if args.postgres or args.database_url.startswith("postgres") else "sqlite"
    )
    report = {
        **summary,
        "database": database,
        "postgres_autovacuum": vacuum,
        "bus": "redis" if args.redis_url else "in-process",
        "workload": {
            "investors": args.investors,
            "advisors": args.advisors,
            "chats_per_advisor": args.chats_per_advisor,
            "duration_s": args.duration,
        },
        "date": started,
        "machine": machine(),
        "hub": hub,
        "bare": bare,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(
            f"{args.investors} investors, {args.advisors} advisors x {args.chats_per_advisor} chats, "
            f"{database}, bus {report['bus']}, {args.duration:.0f} s per phase; {started}; {report['machine']}"
        )
        print(
            f"setup: hub {hub['setup_s']} s, bare {bare['setup_s']} s; loadgen CPU hub {hub['loadgen_cpu_pct']}% "
            f"bare {bare['loadgen_cpu_pct']}%"
        )
        print(table(hub, bare))
        if vacuum == "off":
            print("note: autovacuum is off on this PostgreSQL server: its tables are never analysed "
                  "(PostgreSQL's default and production servers have it on)")
        print(
            f"pipeline/bare throughput={summary['throughput_ratio']} p99_ms={summary['p99_ms']} "
            f"bare_p99_ms={summary['bare_p99_ms']} lost={summary['lost']} duplicated={summary['duplicated']}"
        )
    return 0 if summary["lost"] == 0 and summary["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
