"""The benchmark scripts run and count correctly at a tiny size (scripts/loadgen.py, bare_relay.py).

The loadgen runs as a subprocess against the bare relay and against a real hub; its accounting
(lost, duplicated, latency stamps) is also checked directly on hand-made events.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
pytestmark = pytest.mark.timeout(60)


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"perf_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


loadgen = _script("loadgen")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run_loadgen(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPTS / "loadgen.py"),
        "--json",
        "--no-uvloop",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 45)
    assert out.strip(), err.decode()[-2000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def _wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _assert_counts_add_up(phase: dict[str, Any]) -> None:
    assert phase["sent"] > 0
    assert phase["acked"] == phase["sent"], phase
    assert phase["lost"] == 0 and phase["duplicated"] == 0, phase
    assert 0 < phase["delivered"] <= phase["acked"]
    assert phase["errors"] == {}
    lat = phase["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 5000


@contextlib.asynccontextmanager
async def _bare_relay(*extra: str) -> AsyncIterator[tuple[int, int]]:
    """A bare relay on a free port, as (port, pid), stopped afterwards."""
    port = free_port()
    relay = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPTS / "bare_relay.py"),
        "--port",
        str(port),
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_port(port)
        yield port, relay.pid
    finally:
        relay.terminate()
        await relay.wait()


async def test_loadgen_against_the_bare_relay_counts_every_message(tmp_path: Path) -> None:
    async with _bare_relay("--no-uvloop") as (port, pid):
        result = await _run_loadgen(
            "--url",
            f"http://127.0.0.1:{port}",
            "--bare",
            "--investors",
            "6",
            "--advisors",
            "2",
            "--chats-per-advisor",
            "3",
            "--duration",
            "2",
            "--drain",
            "1",
            "--also-half",
            "--server-pid",
            str(pid),
            "--latency-log",
            str(tmp_path / "latency.txt"),
        )
    assert result["mode"] == "bare" and result["lost"] == 0 and result["duplicated"] == 0
    closed, half = result["phases"]["closed"], result["phases"]["half"]
    _assert_counts_add_up(closed)
    _assert_counts_add_up(half)
    # Closed loop: each chat has one message in flight, so at most one per chat is undelivered
    # when the phase ends; everything acked is delivered by the end of the drain.
    assert closed["acked"] - closed["delivered"] <= 6
    assert half["rate"] == pytest.approx(closed["throughput"] / 2, abs=0.1)
    # The machine's share: the relay's CPU and its wait for a core, the cores' busy share. The
    # relay's CPU comes from /proc/PID/stat in clock ticks (10 ms); a few chats cost it 10-20 ms
    # a second, so a one-second phase could read 0.0 (CI saw it once): two-second phases, and
    # the two phases summed.
    for phase in (closed, half):
        assert phase["server_cpu_pct"] >= 0 and phase["server_runqueue_wait_pct"] >= 0
        assert 0 < phase["machine_busy_pct"] <= 100
    assert closed["server_cpu_pct"] + half["server_cpu_pct"] > 0
    # --latency-log: one line per message counted in a phase, with its send time and latency.
    lines = [line.split() for line in (tmp_path / "latency.txt").read_text().splitlines()]
    for name, phase in (("closed", closed), ("half", half)):
        mine = [(float(sent), float(ms)) for p, sent, ms in lines if p == name]
        assert len(mine) == phase["delivered"]
        assert max(ms for _, ms in mine) == pytest.approx(phase["latency_ms"]["max"], abs=0.01)


async def test_the_open_loop_keeps_its_rate_between_its_2_ms_wakes() -> None:
    """At 1,000 messages/s a message is due every 1 ms, under the loop's 2 ms wake: each wake
    sends what came due since, so the phase still sends its rate."""
    async with _bare_relay() as (port, _pid):
        result = await _run_loadgen(
            "--url",
            f"http://127.0.0.1:{port}",
            "--bare",
            "--uvloop",
            "--investors",
            "60",
            "--advisors",
            "60",
            "--chats-per-advisor",
            "1",
            "--duration",
            "2",
            "--drain",
            "1",
            "--rate",
            "1000",
        )
    opened = result["phases"]["open"]
    _assert_counts_add_up(opened)
    assert opened["sent"] == pytest.approx(1000 * opened["seconds"], rel=0.05)


async def test_loadgen_against_a_real_hub_runs_whole_conversations(hub: Any) -> None:
    result = await _run_loadgen(
        "--url",
        hub.base_url,
        "--investors",
        "2",
        "--advisors",
        "1",
        "--chats-per-advisor",
        "2",
        "--duration",
        "1.5",
        "--drain",
        "1",
        "--bot-probes",
        "1",
        "--bot-interval",
        "0.5",
    )
    assert result["mode"] == "hub" and result["lost"] == 0 and result["duplicated"] == 0
    assert (
        result["setup_bot_answer_ms"]["count"] == 2
    )  # each chat's first question got a bot answer
    closed = result["phases"]["closed"]
    _assert_counts_add_up(closed)
    assert closed["bot_answer_ms"]["count"] >= 1 and closed["bot_answer_ms"]["unanswered"] == 0
    assert result["stray_errors"] == {}
    # The loadgen closed its chats on the way out, as it promises.
    states = {c.state for c in await hub.services.store.list_conversations(limit=100)}
    assert states == {"closed"}


def test_stamps_survive_the_round_trip_and_carry_the_send_time() -> None:
    before = time.time()
    text = loadgen.stamp_text("好的，明白了", 17, 4)
    conv, n, sent = loadgen.parse_stamp(text)
    assert (conv, n) == (17, 4)
    assert before - 0.001 <= sent <= time.time() + 0.001
    # No digit run long enough for compliance's phone, ID or card masks to rewrite it.
    longest = max(len(run) for run in "".join(c if c.isdigit() else " " for c in text).split())
    assert longest < 11
    assert loadgen.parse_stamp("没有标记的消息") is None


def test_percentiles_pick_ranked_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) in (50.0, 51.0)
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile([], 99) is None


def _run_with_one_chat() -> tuple[Any, Any]:
    args = loadgen.parser().parse_args(
        ["--investors", "1", "--advisors", "1", "--chats-per-advisor", "1"]
    )
    run = loadgen.Run(args)
    investor = loadgen.Peer(run, "i0", "investor", "t")
    advisor = loadgen.Peer(run, "a0", "advisor", "t")
    chat = loadgen.Chat(0, investor, conversation_id="conv-0", advisor=advisor)
    run.chats = [chat]
    run.by_conversation = {"conv-0": chat}
    return run, chat


def _message(message_id: str, role: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "conversation_id": "conv-0",
        "id": message_id,
        "sender_role": role,
        "text": text,
    }


async def test_a_message_delivered_twice_counts_as_duplicated_and_one_never_delivered_as_lost() -> (
    None
):
    run, chat = _run_with_one_chat()
    stats = run._begin()
    stats.acked_ids.update({"m1": "a0", "m2": "a0", "m3": "i0"})
    text = loadgen.stamp_text("好的", 0, 1)
    run.on_event(chat.advisor, _message("m1", "investor", text))
    run.on_event(chat.advisor, _message("m1", "investor", text))  # the same id again
    run.on_event(chat.investor, _message("m1", "investor", text))  # the sender's own echo: ignored
    run.on_event(chat.investor, _message("m3", "advisor", loadgen.stamp_text("您好", 0, 2)))
    summary = stats.summary()
    assert summary["delivered"] == 2
    assert summary["duplicated"] == 1
    assert summary["lost"] == 1  # m2 was acked and never reached the advisor
    assert len(stats.latencies) == 2 and all(0 <= x < 1 for x in stats.latencies)


async def test_bench_pipeline_reports_the_servers_autovacuum(pg_url: str) -> None:
    """Off (as on some development servers), the conversation rows' dead versions pile up through
    a run; the report says which it was, read from the server the hub uses."""
    import asyncpg

    bench = _script("bench_pipeline")
    conn = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
    try:
        expected = await conn.fetchval("SELECT setting FROM pg_settings WHERE name = 'autovacuum'")
    finally:
        await conn.close()
    reported = await asyncio.get_running_loop().run_in_executor(None, bench.autovacuum, pg_url)
    assert reported == expected and reported in {"on", "off"}
