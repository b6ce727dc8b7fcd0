"""The `chatserver` command as an operator uses it, run as real subprocesses on a real data dir."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from chatserver.settings import Settings


def run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chatserver", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_help_documents_every_setting():
    out = subprocess.run([sys.executable, "-m", "chatserver", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out.stdout, flag
        assert "CHATSERVER_" + f.name.upper() in out.stdout
    for command in ("serve", "customers", "audit", "kb", "users", "purge"):
        assert command in out.stdout


def test_refuses_to_start_without_a_secret_outside_demo_mode(tmp_path):
    out = run(tmp_path, "--no-demo", "serve")
    assert out.returncode == 2 and "CHATSERVER_SECRET" in out.stderr


def test_bad_environment_value_is_a_clear_error(tmp_path):
    import os

    out = run(tmp_path, "audit", "verify", env={**os.environ, "CHATSERVER_PORT": "eighty"})
    assert out.returncode == 2 and "CHATSERVER_PORT" in out.stderr


def test_out_of_range_commit_gather_is_refused_at_start(tmp_path):
    out = run(tmp_path, "--commit-gather-ms", "500", "serve")
    assert out.returncode == 2 and "commit_gather_ms" in out.stderr


def test_customers_import_reports_bad_rows_by_line(tmp_path):
    csv_file = tmp_path / "crm.csv"
    csv_file.write_text(
        "\ufeffid,name,star,risk_level,tags_risk,tags_qualification,tags_preference,tags_value,dedicated_advisor,team,phone\n"
        "C9001,周敏,4,C4,积极型,创业板|两融,成长股,高净值,advisor2,team-a,13912345678\n"
        "C9002,,3,C3,,,,,,,\n"
        "C9003,吴刚,7,C3,,,,,,,\n"
        "C9004,郑丽,2,C9,,,,,,,\n"
        "C9005,王磊,2,C2,,,,,,,12345\n"
        "C9001,重复,1,C1,,,,,,,\n",
        encoding="utf-8",
    )
    out = run(tmp_path, "customers", "import", str(csv_file))
    assert out.returncode == 1
    errors = out.stderr
    for line, words in ((3, "name is required"), (4, "star must be 1-5"), (5, "risk_level must be C1-C5"),
                        (6, "phone"), (7, "appears twice")):
        assert f"line {line}: " in errors and words in errors, (line, errors)
    assert "imported 1 customer" in out.stdout
    db = sqlite3.connect(tmp_path / "chatserver.sqlite3")
    row = db.execute("select name, star, risk_level, tags_qualification, phone_masked from customers where id='C9001'").fetchone()
    assert row[0] == "周敏" and row[1] == 4 and row[2] == "C4" and "两融" in json.loads(row[3]) and row[4] == "139****5678"
    strict = run(tmp_path, "customers", "import", "--strict", str(csv_file))
    assert strict.returncode == 1 and "nothing imported" in strict.stderr


def test_customers_import_rejects_a_wrong_header(tmp_path):
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("customer,fullname\nC1,x\n", encoding="utf-8")
    out = run(tmp_path, "customers", "import", str(csv_file))
    assert out.returncode == 1 and "line 1: header lacks column(s) id, name" in out.stderr


def test_audit_verify_passes_then_fails_after_an_edit(tmp_path):
    # A real conversation stored by a real hub, then checked, tampered with, checked again.
    import asyncio

    from chatserver.app import close_services, open_services

    async def converse() -> None:
        services = await open_services(Settings(data_dir=str(tmp_path)))
        try:
            from chatserver.auth import Principal

            who = Principal(user_id="v1", role="investor", name="访客")
            from chatserver.storage.records import User

            await services.store.create_user(User(id="v1", username="v1", display_name="访客", role="investor"), 0.0)
            conv = await services.hub.start_conversation(who)
            await services.hub.accept_message(who, conv.id, "开户需要什么材料", "c1")
        finally:
            await close_services(services)

    asyncio.run(converse())
    ok = run(tmp_path, "audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    db = sqlite3.connect(tmp_path / "chatserver.sqlite3")
    db.execute("update messages set text = '保证收益' where seq = 2")
    db.commit()
    bad = run(tmp_path, "audit", "verify")
    assert bad.returncode == 1 and "seq 2: content does not match its hash" in bad.stdout


def test_users_add_and_kb_unanswered(tmp_path):
    out = run(tmp_path, "users", "add", "advisor9", "--role", "advisor", "--password", "s3cret-pass",
              "--groups", "margin,general", "--capacity", "8")
    assert out.returncode == 0 and '"capacity": 8' in out.stdout and "margin" in out.stdout
    again = run(tmp_path, "users", "add", "advisor9", "--role", "advisor", "--password", "s3cret-pass")
    assert again.returncode == 2 and "taken" in again.stderr
    weak = run(tmp_path, "users", "add", "advisor10", "--role", "advisor", "--password", "short")
    assert weak.returncode == 2 and "at least 8" in weak.stderr
    listing = run(tmp_path, "kb", "unanswered")
    assert listing.returncode == 0 and "0 unanswered question(s)" in listing.stdout


def test_purge_without_retention_purges_nothing(tmp_path):
    out = run(tmp_path, "purge")
    assert out.returncode == 0 and "nothing purged" in out.stdout


async def test_two_sessions_of_one_user_never_reuse_a_client_id(hub):
    """cids are idempotency keys per user: a second session's messages must not be taken for resends."""
    first, conv = await hub.investor("investor3")
    second = await hub.connect("investor3")
    assert (await second.start())["id"] == conv["id"]  # the open chat, in a second window
    a = await first.say(conv["id"], "第一个窗口的问题")
    b = await second.say(conv["id"], "第二个窗口的问题")
    assert not a["duplicate"] and not b["duplicate"] and a["message_id"] != b["message_id"]
    status, body = await hub.http("GET", f"/api/conversations/{conv['id']}", token=await hub.token("investor3"))
    assert status == 200
    texts = [m["text"] for m in body["messages"]]
    assert "第一个窗口的问题" in texts and "第二个窗口的问题" in texts


def test_a_serving_process_collects_garbage_rarely_and_switches_threads_often():
    """prepare_process (serve and each serve --workers process): full collections 100x rarer
    than Python's default, a 1 ms GIL switch interval (docs/benchmarks/pipeline.md)."""
    probe = ("import gc, sys; from chatserver.app import prepare_process; before = gc.get_threshold(); "
             "prepare_process(); print(before, gc.get_threshold(), sys.getswitchinterval())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split(")", 1)[0] + ")" == "(700, 10, 10)"
    assert out.stdout.strip().endswith("(700, 10, 1000) 0.001")
