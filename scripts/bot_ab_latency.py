"""Per-message CPU time of `Bot.respond` for two versions of `bot/` in one process, runs
interleaved, so both see the same machine load: the working tree against a git revision.

    .venv/bin/python scripts/bot_ab_latency.py --rev HEAD~1 [--runs 6]
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _old_package(rev: str, into: Path) -> str:
    """`bot/` at `rev`, unpacked into `into` as package `bot_old` (imports rewritten)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "bot"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "bot").rename(into / "bot_old")
    for path in (into / "bot_old").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\bfrom bot(\.| import)", r"from bot_old\1", text)
        text = text.replace('resources.files("bot")', 'resources.files("bot_old")')
        path.write_text(text, encoding="utf-8")
    return "bot_old"


def _cpu_us(bot: object, state_type: type, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.thread_time_ns()
        bot.respond(text, state_type(), "C5")  # type: ignore[attr-defined]
        out.append((time.thread_time_ns() - start) / 1000.0)
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="git revision of the old bot/")
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    import bot
    from bot.eval import DEMO_QUERY_FILES, load_demo_queries

    # The first query file exists at every revision worth comparing.
    texts = [q.query for q in load_demo_queries(DEMO_QUERY_FILES[:1])]
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        old = importlib.import_module(_old_package(args.rev, Path(tmp)))
        systems = {
            args.rev: (old.Bot(old.load_demo_kb()), old.BotState),
            "working tree": (bot.Bot(bot.load_demo_kb()), bot.BotState),
        }
        runs: dict[str, list[list[float]]] = {name: [] for name in systems}
        for r in range(args.runs):
            order = list(systems) if r % 2 == 0 else list(reversed(systems))
            for name in order:
                runs[name].append(_cpu_us(*systems[name], texts))
    for name, results in runs.items():
        p50 = sorted(round(x[len(x) // 2], 1) for x in results)
        p99 = sorted(round(x[int(0.99 * len(x))], 1) for x in results)
        print(f"{name}: {len(texts)} messages, CPU µs per message, one value per run")
        print(f"  p50 {p50}\n  p99 {p99}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
