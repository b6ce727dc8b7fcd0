"""The store on SQLite and PostgreSQL alike: gap-free seqs, idempotency, hash chains, purge."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import text, update

from chatserver.storage import schema as t
from chatserver.storage.records import Conversation, Customer, NewMessage, User
from chatserver.storage.sql import SharedRows, SQLStore, StorageUnavailable, new_id, open_store


@pytest.fixture
async def store(db_url: str):
    s = open_store(db_url, batch_max=64)
    await s.start()
    yield s
    await s.close()


async def conversation(store: SQLStore) -> str:
    now = time.time()
    user = User(id=new_id(), username=f"u-{new_id()[-10:]}", display_name="投资者", role="investor")
    await store.create_user(user, now)
    conv = Conversation(id=new_id(), investor_id=user.id, channel="web", state="bot", created_at=now, updated_at=now)
    await store.create_conversation(conv)
    return conv.id


def message(cid: str, text: str, *, sender: str = "s1", client_id: str | None = None) -> NewMessage:
    return NewMessage(conversation_id=cid, sender_id=sender, sender_role="investor", sender_name="x",
                      kind="text", text=text, client_id=client_id, created_at=time.time())


async def test_seqs_are_gap_free_under_concurrent_appends(store):
    a, b = await conversation(store), await conversation(store)
    results = await asyncio.gather(*(store.append(message(a if i % 3 else b, f"m{i}")) for i in range(200)))
    for cid in (a, b):
        seqs = sorted(r.seq for r in results if r.conversation_id == cid)
        assert seqs == list(range(1, len(seqs) + 1))
        stored = await store.messages_after(cid, 0)
        assert [m.seq for m in stored] == seqs
    assert (await store.get_conversation(a)).last_seq == sum(1 for r in results if r.conversation_id == a)


async def test_append_is_idempotent_per_sender_and_client_id(store):
    cid = await conversation(store)
    first = await store.append(message(cid, "hello", client_id="k1"))
    again, other_sender = await asyncio.gather(
        store.append(message(cid, "hello", client_id="k1")),
        store.append(message(cid, "hello", sender="s2", client_id="k1")),
    )
    assert again.id == first.id and again.duplicate and not first.duplicate
    assert other_sender.id != first.id  # client ids are per sender
    assert len(await store.messages_after(cid, 0)) == 2


async def test_duplicates_inside_one_batch_resolve_to_one_message(store):
    cid = await conversation(store)
    results = await asyncio.gather(*(store.append(message(cid, "same", client_id="dup")) for _ in range(5)))
    assert len({r.id for r in results}) == 1
    assert sum(1 for r in results if not r.duplicate) == 1
    assert len(await store.messages_after(cid, 0)) == 1


async def test_messages_after_returns_exactly_the_tail(store):
    cid = await conversation(store)
    for i in range(10):
        await store.append(message(cid, f"m{i}"))
    tail = await store.messages_after(cid, 6)
    assert [m.seq for m in tail] == [7, 8, 9, 10] and [m.text for m in tail] == ["m6", "m7", "m8", "m9"]


async def test_hash_chain_detects_edit_delete_and_reorder(store):
    cid = await conversation(store)
    stored = [await store.append(message(cid, f"第{i}条")) for i in range(5)]
    await store.audit(cid, "u", "conversation.start", {"channel": "web"}, time.time())
    await store.audit(cid, "u", "conversation.close", None, time.time())
    assert await store.verify_chains() == []
    async with store.write() as conn:
        await conn.execute(update(t.messages).where(t.messages.c.id == stored[2].id).values(text="保证收益"))
    problems = await store.verify_chains()
    assert any("seq 3" in p and "does not match" in p for p in problems), problems
    async with store.write() as conn:
        await conn.execute(update(t.messages).where(t.messages.c.id == stored[2].id).values(text="第2条"))
    assert await store.verify_chains() == []
    async with store.write() as conn:
        await conn.execute(t.messages.delete().where(t.messages.c.id == stored[4].id))
    assert any("head says 5" in p for p in await store.verify_chains())


async def test_audit_chain_detects_an_edited_event(store):
    await store.audit("global", "admin", "login", {"role": "admin"}, time.time())
    await store.audit("global", "admin", "rules.version", {"version": 2}, time.time())
    assert await store.verify_chains() == []
    async with store.write() as conn:
        await conn.execute(update(t.audit_events).where(t.audit_events.c.chain_seq == 1).values(action="nothing"))
    assert any("audit chain global record 1" in p for p in await store.verify_chains())


async def test_alerts_and_outbox_commit_with_their_message(store):
    cid = await conversation(store)
    alert = {"id": new_id(), "sender_id": "a1", "sender_role": "advisor", "rule_id": "R1", "category": "promise_returns",
             "tier": "warn", "span_start": 0, "span_end": 2, "matched": "保本", "state": "open", "created_at": time.time()}
    m = await store.append(NewMessage(conversation_id=cid, sender_id="a1", sender_role="advisor", sender_name="顾问",
                                      kind="text", text="保本", verdict="warn", created_at=time.time(),
                                      alerts=(alert,), deliver_to_channel="wechat"))
    alerts = await store.list_alerts()
    assert alerts[0]["message_id"] == m.id and alerts[0]["conversation_id"] == cid
    deliveries = await store.deliveries_for(cid)
    assert deliveries[0]["message_id"] == m.id and deliveries[0]["status"] == "pending"


async def test_alert_state_changes_are_compare_and_set(store):
    cid = await conversation(store)
    alert = {"id": new_id(), "sender_id": "a1", "sender_role": "advisor", "rule_id": "R1", "category": "abuse",
             "tier": "warn", "span_start": 0, "span_end": 1, "matched": "x", "state": "open", "created_at": time.time()}
    await store.append(NewMessage(conversation_id=cid, sender_id="a1", sender_role="advisor", sender_name="",
                                  kind="text", text="x", verdict="warn", created_at=time.time(), alerts=(alert,)))
    wins = await asyncio.gather(*(store.update_alert(alert["id"], ["open"], state="acknowledged", acknowledged_by=f"s{i}")
                                  for i in range(4)))
    assert sum(wins) == 1


async def test_purge_respects_legal_hold(store):
    old, held, recent = [await conversation(store) for _ in range(3)]
    for cid in (old, held, recent):
        await store.append(message(cid, "transcript"))
    await store.update_conversation(old, time.time(), state="closed", closed_at=1000.0)
    await store.update_conversation(held, time.time(), state="closed", closed_at=1000.0, legal_hold=True)
    await store.update_conversation(recent, time.time(), state="closed", closed_at=time.time())
    assert await store.purge_closed_before(time.time() - 86400) == 1
    assert await store.get_conversation(old) is None
    assert await store.messages_after(held, 0) and await store.messages_after(recent, 0)


async def test_schema_matches_migrations(store):
    """The Alembic revisions create exactly the tables schema.py declares."""
    async with store.read() as conn:
        def tables(sync_conn):
            from sqlalchemy import inspect

            return set(inspect(sync_conn).get_table_names())

        present = await conn.run_sync(tables)
    assert set(t.metadata.tables) <= present


async def test_unreachable_database_fails_appends_without_ack(tmp_path):
    import asyncpg  # noqa: F401 - the driver must be installed for this URL

    dead = open_store("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StorageUnavailable):
        await dead.start()
    assert await dead.ping() is False
    await dead.engine.dispose()


async def test_sqlite_file_survives_reopen(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}"
    s = open_store(url)
    await s.start()
    cid = await conversation(s)
    m = await s.append(message(cid, "persisted"))
    await s.close()
    s2 = open_store(url)
    await s2.start()
    try:
        assert [x.id for x in await s2.messages_after(cid, 0)] == [m.id]
        async with s2.read() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        assert mode == "wal"
    finally:
        await s2.close()


async def test_sqlite_locked_by_another_process_fails_the_append_then_recovers(tmp_path):
    """The group-commit writer's own sqlite3 connection: a lock it cannot get is an error, not an ack."""
    import sqlite3

    from chatserver.storage.sql import SqliteStore

    path = tmp_path / "locked.sqlite3"
    s = SqliteStore(f"sqlite+aiosqlite:///{path}", busy_timeout_s=0.2)
    await s.start()
    try:
        cid = await conversation(s)
        other = sqlite3.connect(path, isolation_level=None)  # as another `serve` process would
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageUnavailable, match="locked"):
            await s.append(message(cid, "not acked", client_id="c-1"))
        other.execute("ROLLBACK")
        other.close()
        retried = await s.append(message(cid, "not acked", client_id="c-1"))  # the client's retry
        assert retried.seq == 1 and not retried.duplicate
        assert [m.text for m in await s.messages_after(cid, 0)] == ["not acked"]
    finally:
        await s.close()


async def test_two_processes_racing_one_client_id_store_it_once(db_url: str):
    """Two stores on one database (serve --workers, or two nodes): the loser's unique-key
    conflict resolves to the winner's message."""
    a, b = open_store(db_url), open_store(db_url)
    await a.start()
    await b.start()
    try:
        cid = await conversation(a)
        first, second = await asyncio.gather(
            a.append(message(cid, "once", client_id="same")), b.append(message(cid, "once", client_id="same")))
        assert first.id == second.id and {first.duplicate, second.duplicate} == {False, True}
        assert [m.text for m in await a.messages_after(cid, 0)] == ["once"]
    finally:
        await a.close()
        await b.close()


async def test_question_and_bot_answer_commit_together_and_a_resend_is_not_answered_again(store):
    cid = await conversation(store)
    bot_answer = NewMessage(conversation_id=cid, sender_id="bot", sender_role="bot", sender_name="智能助手",
                            kind="bot", text="开户需要身份证和银行卡。", created_at=time.time())
    question, answer = await store.append_with_reply(message(cid, "开户要什么", client_id="q-1"), bot_answer,
                                                     {"intent": "account"})
    assert answer is not None and (question.seq, answer.seq) == (1, 2) and not question.duplicate
    again, second = await store.append_with_reply(message(cid, "开户要什么", client_id="q-1"), bot_answer,
                                                  {"intent": "account"})
    assert again.duplicate and again.id == question.id and second is None
    stored = await store.messages_after(cid, 0)
    assert [(m.seq, m.sender_role) for m in stored] == [(1, "investor"), (2, "bot")]
    assert (await store.get_conversation(cid)).intent == "account"
    assert await store.verify_chains() == []


async def test_conversation_cache_follows_message_commits_and_row_writes(db_url: str):
    """One node caches conversation rows: reads racing message commits still end on the true head."""
    s = open_store(db_url, batch_max=8)
    s.cache_conversations()
    await s.start()
    try:
        cid = await conversation(s)
        # Reads interleaved with commits: some start before a batch commits and finish after it.
        results = await asyncio.gather(*(
            s.append(message(cid, f"m{i}")) if i % 2 else s.get_conversation(cid) for i in range(120)
        ))
        assert max(r.seq for r in results if not hasattr(r, "investor_id")) == 60
        assert cid in s._conversations  # served from memory from now on
        assert (await s.get_conversation(cid)).last_seq == 60
        async with s.read() as conn:
            head = (await conn.execute(text("SELECT last_seq FROM conversations WHERE id = :id"), {"id": cid})).scalar()
        assert head == 60
        # A bot turn's row change commits with its messages and updates the cached row in place.
        bot_answer = NewMessage(conversation_id=cid, sender_id="bot", sender_role="bot", sender_name="智能助手",
                                kind="bot", text="开户需要身份证。", created_at=time.time())
        await s.append_with_reply(message(cid, "开户要什么"), bot_answer, {"intent": "account", "bot_state": {"turns": 3}})
        cached = s._conversations[cid]
        assert (cached.intent, cached.bot_state, cached.last_seq) == ("account", {"turns": 3}, 62)
        # A row write (not a message) drops the cached row: the next read sees the new state.
        await s.update_conversation(cid, time.time(), state="queued")
        assert cid not in s._conversations
        conv = await s.get_conversation(cid)
        assert (conv.state, conv.intent, conv.bot_state, conv.last_seq) == ("queued", "account", {"turns": 3}, 62)
        # So does an assignment that lands; one that lost its compare-and-set drops the row.
        assert await s.take_conversation(conv, "adv-1", time.time())
        assert (s._conversations[cid].state, s._conversations[cid].advisor_id) == ("assigned", "adv-1")
        assert not await s.take_conversation(conv, "adv-2", time.time())
        assert cid not in s._conversations
        assert (await s.get_conversation(cid)).advisor_id == "adv-1"
        async with s.read() as conn:
            row = (await conn.execute(text("SELECT state, advisor_id FROM conversations WHERE id = :id"),
                                      {"id": cid})).one()
        assert tuple(row) == ("assigned", "adv-1")
    finally:
        await s.close()


async def test_racing_row_writes_leave_the_cache_as_the_database_is(db_url: str):
    """Writes of one row may finish in either order: a write whose turn to update the cache
    comes after a later write of the same row has landed drops the row instead of keeping its own
    (older) values."""
    s = open_store(db_url, batch_max=8)
    s.cache_conversations()
    await s.start()
    try:
        cid = await conversation(s)
        await s.get_conversation(cid)
        conv = await s.get_conversation(cid)
        began = s._write_stamp(cid)  # assignment A begins (it commits first, say) ...
        await s.update_conversation(cid, time.time(), state="closed")  # ... write B begins and ends
        await s.get_conversation(cid)  # (and the row is cached again)
        s._conversation_written(cid, changes={"state": "assigned"}, since=began)  # A's ending comes last
        assert cid not in s._conversations
        assert (await s.get_conversation(cid)).state == "closed"
        # Assignments that overlap for real (one lands) end with the cache as the database is.
        await s.update_conversation(cid, time.time(), state="queued")
        conv = await s.get_conversation(cid)
        assert sum(await asyncio.gather(*(s.take_conversation(conv, f"adv-{n}", time.time()) for n in range(6)))) == 1
        async with s.read() as conn:
            row = (await conn.execute(text("SELECT state, advisor_id FROM conversations WHERE id = :id"),
                                      {"id": cid})).one()
        now_cached = await s.get_conversation(cid)
        assert (now_cached.state, now_cached.advisor_id) == tuple(row)
    finally:
        await s.close()


async def test_customer_cache_is_emptied_by_an_upsert(db_url: str):
    """Each investor message reads its customer's profile: one node serves it from memory until written."""
    s = open_store(db_url, batch_max=8)
    s.cache_conversations()
    await s.start()
    try:
        cust = Customer(id=f"c-{new_id()[-8:]}", name="王先生", star=3, risk_level="C2")
        await s.upsert_customers([cust], time.time())
        assert (await s.get_customer(cust.id)).risk_level == "C2"
        assert cust.id in s._customers
        await s.upsert_customers([replace(cust, risk_level="C4")], time.time())
        assert cust.id not in s._customers
        assert (await s.get_customer(cust.id)).risk_level == "C4"
        assert await s.get_customer("nobody") is None and "nobody" not in s._customers
    finally:
        await s.close()


async def test_shared_conversation_cache_trusts_only_notices_it_can_vouch_for(db_url: str):
    """Several nodes: rows are cached for the message path, dropped on another node's notice,
    emptied when the bus's notices may have gaps, and never older than the TTL."""
    told: list[str] = []
    bus_epoch: list[object] = [(0, 0)]
    shared = SharedRows(written=told.append, epoch=lambda: bus_epoch[0], ttl_s=0.3)
    s = open_store(db_url, batch_max=8)
    s.cache_conversations(shared=shared)
    await s.start()
    other = open_store(db_url, batch_max=8)  # another node writing the same database
    await other.start()
    try:
        cid = await conversation(s)
        assert (await s.get_conversation(cid)).state == "bot"
        # Another node changes the row: only a reader that accepts a recent row sees the cached one.
        await other.update_conversation(cid, time.time(), state="queued")
        assert (await s.get_conversation(cid, recent_ok=True)).state == "bot"
        assert (await s.get_conversation(cid)).state == "queued"  # a plain read goes to the database
        # ... and its notice drops the row.
        await other.update_conversation(cid, time.time(), state="assigned")
        s.forget_conversation(cid)
        assert (await s.get_conversation(cid, recent_ok=True)).state == "assigned"
        # This node's own row writes are announced to the others.
        await s.update_conversation(cid, time.time(), state="queued")
        assert told == [cid]
        assert (await s.get_conversation(cid, recent_ok=True)).state == "queued"
        # A gap in the notices (the bus reconnected) empties the cache; no epoch means no cache.
        await other.update_conversation(cid, time.time(), state="assigned")
        bus_epoch[0] = (1, 0)
        assert (await s.get_conversation(cid, recent_ok=True)).state == "assigned"
        bus_epoch[0] = None
        await other.update_conversation(cid, time.time(), state="queued")
        assert (await s.get_conversation(cid, recent_ok=True)).state == "queued"
        # A notice that never came is outlived by the TTL.
        bus_epoch[0] = (1, 0)
        assert (await s.get_conversation(cid, recent_ok=True)).state == "queued"
        await other.update_conversation(cid, time.time(), state="assigned")
        assert (await s.get_conversation(cid, recent_ok=True)).state == "queued"
        await asyncio.sleep(0.35)
        assert (await s.get_conversation(cid, recent_ok=True)).state == "assigned"
    finally:
        await other.close()
        await s.close()


async def test_shared_cached_rows_are_read_again_at_spread_times(db_url: str):
    """Rows cached together are not all read again together: each expires at a random point
    between half and all of the TTL (a thousand chats' rows expiring at once stalled a node)."""
    shared = SharedRows(written=lambda _cid: None, epoch=lambda: (0, 0), ttl_s=4.0)
    s = open_store(db_url, batch_max=8)
    s.cache_conversations(shared=shared)
    await s.start()
    other = open_store(db_url, batch_max=8)
    await other.start()
    try:
        cids = [await conversation(s) for _ in range(20)]
        cached_at = time.monotonic()
        for cid in cids:
            assert (await s.get_conversation(cid, recent_ok=True)).state == "bot"
        for cid in cids:  # written behind this node's back: only a read again shows it
            await other.update_conversation(cid, time.time(), state="queued")
        # Between the earliest (2 s) and the latest (4 s) expiry, timed from the caching (the
        # writes above take a while on PostgreSQL).
        await asyncio.sleep(cached_at + 3.0 - time.monotonic())
        states = [(await s.get_conversation(cid, recent_ok=True)).state for cid in cids]
        assert 0 < states.count("queued") < len(cids)
        await asyncio.sleep(cached_at + 4.2 - time.monotonic())
        assert all([(await s.get_conversation(c, recent_ok=True)).state == "queued" for c in cids])
    finally:
        await other.close()
        await s.close()


async def test_group_commit_gathers_a_trickle_into_one_commit_only_while_busy(db_url: str):
    """With a gather window, messages streaming in share one commit; an idle writer does not wait."""
    from chatserver.storage.sql import _RawWriter

    s = open_store(db_url, batch_max=64, gather_s=0.2)
    await s.start()
    if isinstance(s._raw, _RawWriter):
        commits = s._raw.batch_sizes  # a SQLite file's batches commit on the writer's thread
    else:
        commits = []
        commit_batch = s._commit_batch

        async def counting(items):
            commits.append(len(items))
            await commit_batch(items)

        s._commit_batch = counting  # count the writer's batches; the commit itself is the real one
    try:
        cid = await conversation(s)
        await asyncio.sleep(0.3)  # the writer has been idle longer than the window
        lone = asyncio.ensure_future(s.append(message(cid, "甲")))
        await asyncio.sleep(0.02)
        # The first found the writer idle and did not wait for this one.
        second = await s.append(message(cid, "乙"))
        assert list(commits) == [1, 1]
        # These find a commit just ended: the first waits for the others.
        first = asyncio.ensure_future(s.append(message(cid, "一")))
        await asyncio.sleep(0.02)  # inside the window: still gathered
        rest = [asyncio.ensure_future(s.append(message(cid, t))) for t in ("二", "三")]
        stored = await asyncio.gather(lone, first, *rest)
        assert [m.seq for m in stored] == [1, 3, 4, 5] and second.seq == 2
        assert list(commits) == [1, 1, 3]
    finally:
        await s.close()


def _hold_the_write_turn(turn) -> tuple[threading.Thread, threading.Event]:
    """Another writer of the file has the turn until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with turn.writer():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold, name="turn-holder")
    holder.start()
    assert held.wait(5)
    return holder, release


async def test_sqlite_engine_writes_and_batches_alternate_while_both_wait(tmp_path):
    """The writer thread and the engine's transactions take turns on the file (no SQLITE_BUSY,
    whose retries sleep). When both wait they alternate: a waiting engine write goes before the
    next batch, and a burst of engine writes (a restart's requeues, say) cannot hold the
    messages back."""
    from chatserver.storage.sql import SqliteStore

    s = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'alternate.sqlite3'}")
    await s.start()
    try:
        cid = await conversation(s)
        holder, release = _hold_the_write_turn(s._raw.turn)
        done: list[str] = []

        async def engine_write(name: str, state: str) -> None:
            await s.update_conversation(cid, time.time(), state=state)
            done.append(name)

        async def message_write() -> None:
            await s.append(message(cid, "甲"))
            done.append("message")

        writes = [asyncio.ensure_future(engine_write("engine 1", "queued"))]
        await asyncio.sleep(0.05)
        writes.append(asyncio.ensure_future(message_write()))
        await asyncio.sleep(0.05)
        writes.append(asyncio.ensure_future(engine_write("engine 2", "assigned")))
        await asyncio.sleep(0.05)
        assert done == []  # all wait for the file
        release.set()
        await asyncio.wait_for(asyncio.gather(*writes), 5)
        holder.join()
        assert done == ["engine 1", "message", "engine 2"]
        assert (await s.get_conversation(cid)).state == "assigned"
        assert [m.text for m in await s.messages_after(cid, 0)] == ["甲"]
    finally:
        await s.close()


async def test_write_turn_alternates_when_engine_writes_and_a_batch_wait():
    """Two engine writes waiting at once (the store's own lock keeps them apart, so only a gap
    between them would otherwise let the batch in) and a batch: the batch goes between them."""
    from chatserver.storage.sql import _WriteTurn

    turn = _WriteTurn()
    order: list[str] = []

    def batch() -> None:
        with turn.writer():
            order.append("batch")

    async def engine_write(name: str) -> None:
        async with turn.engine():
            order.append(name)
            await asyncio.sleep(0.01)

    holder, release = _hold_the_write_turn(turn)
    writes = [asyncio.ensure_future(engine_write("engine 1"))]
    await asyncio.sleep(0.05)
    batcher = threading.Thread(target=batch)
    batcher.start()
    await asyncio.sleep(0.05)
    writes.append(asyncio.ensure_future(engine_write("engine 2")))
    await asyncio.sleep(0.05)
    assert order == []
    release.set()
    await asyncio.wait_for(asyncio.gather(*writes), 5)
    holder.join()
    batcher.join(5)
    assert order[1] == "batch" and sorted(order[::2]) == ["engine 1", "engine 2"]


async def test_sqlite_engine_write_cancelled_while_waiting_gives_its_turn_back(tmp_path):
    from chatserver.storage.sql import SqliteStore

    s = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'cancel.sqlite3'}")
    await s.start()
    try:
        cid = await conversation(s)
        holder, release = _hold_the_write_turn(s._raw.turn)
        waiting = asyncio.ensure_future(s.update_conversation(cid, time.time(), state="queued"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        holder.join()
        # The cancelled write's turn came after all and went back: messages and rows go on.
        assert (await asyncio.wait_for(s.append(message(cid, "乙")), 5)).seq == 1
        await asyncio.wait_for(s.update_conversation(cid, time.time(), state="closed"), 5)
        assert (await s.get_conversation(cid)).state == "closed"
    finally:
        await s.close()


async def test_sqlite_close_commits_every_queued_message_first(tmp_path):
    from chatserver.storage.sql import SqliteStore

    s = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'drain.sqlite3'}", batch_max=8)
    await s.start()
    cid = await conversation(s)
    appends = [asyncio.ensure_future(s.append(message(cid, f"m{i}"))) for i in range(40)]
    await asyncio.sleep(0)  # all 40 are in the writer's queue
    await s.close()
    assert [a.result().seq for a in appends] == list(range(1, 41))
    with pytest.raises(StorageUnavailable, match="not running"):
        await s.append(message(cid, "too late"))
    reopened = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'drain.sqlite3'}")
    await reopened.start()
    try:
        assert len(await reopened.messages_after(cid, 0)) == 40
    finally:
        await reopened.close()


async def test_sqlite_circuit_opens_on_failed_commits_and_a_probe_closes_it(tmp_path):
    """Appends fail fast (not queued behind a dead file) once three commits in a row failed;
    after the open period one append probes, and its commit closes the circuit."""
    import sqlite3

    from chatserver.storage.sql import SqliteStore

    path = tmp_path / "breaker.sqlite3"
    s = SqliteStore(f"sqlite+aiosqlite:///{path}", busy_timeout_s=0.05)
    s.breaker.open_for_s = 0.3
    await s.start()
    try:
        cid = await conversation(s)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        for n in range(3):
            with pytest.raises(StorageUnavailable, match="locked"):
                await s.append(message(cid, f"失败{n}", client_id=f"c-{n}"))
        assert s.breaker.is_open
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="circuit open"):
            await s.append(message(cid, "fast", client_id="c-fast"))
        assert time.monotonic() - started < 0.05
        other.execute("ROLLBACK")
        other.close()
        await asyncio.sleep(0.35)
        probe = await s.append(message(cid, "probe", client_id="c-probe"))
        assert probe.seq == 1 and not s.breaker.is_open
        assert [m.text for m in await s.messages_after(cid, 0)] == ["probe"]
    finally:
        await s.close()


async def test_sqlite_writer_outlives_a_failing_batch_and_a_retry_finds_what_it_stored(tmp_path, caplog):
    """An unexpected error on the writer thread fails that batch back to its senders (logged) and
    the writer goes on; a sender's retry with the same client id is answered from the database."""
    from collections import deque

    from chatserver.storage.sql import SqliteStore

    class FailingAfterCommit(deque):
        def append(self, size: int) -> None:
            raise RuntimeError("bug after the commit")

    s = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'bug.sqlite3'}")
    await s.start()
    try:
        cid = await conversation(s)
        assert (await s.append(message(cid, "甲"))).seq == 1
        s._raw.batch_sizes = FailingAfterCommit()
        with pytest.raises(StorageUnavailable, match="store error: bug after the commit"):
            await s.append(message(cid, "乙", client_id="c-2"))
        assert "message batch failed" in caplog.text
        s._raw.batch_sizes = deque(maxlen=256)
        retried = await s.append(message(cid, "乙", client_id="c-2"))
        assert retried.duplicate and retried.seq == 2  # stored once, never acknowledged until now
        assert (await s.append(message(cid, "丙"))).seq == 3
    finally:
        await s.close()


def test_a_process_that_never_closes_its_sqlite_store_still_exits(tmp_path):
    """The commit loop's thread waits for messages forever; it must not keep the process alive
    (a command that fails half-way, a test that forgets `close`)."""
    import subprocess
    import sys

    script = (
        "import asyncio\n"
        "from chatserver.storage.sql import SqliteStore\n"
        "async def main():\n"
        f"    s = SqliteStore('sqlite+aiosqlite:///{tmp_path / 'open.sqlite3'}')\n"
        "    await s.start()\n"
        "asyncio.run(main())\n"
        "print('exiting')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting"


def _messages_in_database_file(path) -> int:
    """Messages in the SQLite main file itself: `immutable` makes SQLite ignore the WAL."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return db.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.DatabaseError:  # not even the schema copied there yet, or a copy under way
        return 0
    finally:
        db.close()


async def test_sqlite_wal_is_copied_into_the_database_file_off_the_commit_path(tmp_path):
    """Commits leave the WAL copy to the store's checkpointer, which runs a moment later.

    A handful of messages is far below SQLite's own checkpoint threshold, so without the
    checkpointer they would stay in the WAL and the main file would not hold them.
    """
    from chatserver.storage.sql import (
        CHECKPOINT_INTERVAL_S,
        SQLITE_PAGE_SIZE,
        WAL_AUTOCHECKPOINT_PAGES,
        WAL_SIZE_LIMIT_BYTES,
        SqliteStore,
    )

    path = tmp_path / "checkpointed.sqlite3"
    s = SqliteStore(f"sqlite+aiosqlite:///{path}")
    await s.start()
    try:
        cid = await conversation(s)
        for i in range(5):
            await s.append(message(cid, f"第{i}条"))
        async with s.read() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == WAL_AUTOCHECKPOINT_PAGES
            assert (await conn.execute(text("PRAGMA page_size"))).scalar() == SQLITE_PAGE_SIZE
            limit = (await conn.execute(text("PRAGMA journal_size_limit"))).scalar()
        # The WAL at SQLite's threshold (a 32-byte header, then a 24-byte header per page) fits
        # under the size limit: otherwise every rewind would cut the file back, to be regrown.
        assert limit == WAL_SIZE_LIMIT_BYTES >= 32 + WAL_AUTOCHECKPOINT_PAGES * (24 + SQLITE_PAGE_SIZE)
        deadline = time.monotonic() + 10
        while _messages_in_database_file(path) < 5:
            assert time.monotonic() < deadline, "the WAL was never copied into the database file"
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
    finally:
        await s.close()


async def test_a_failing_checkpoint_is_logged_and_commits_go_on(tmp_path, caplog):
    from chatserver.storage.sql import CHECKPOINT_INTERVAL_S, SqliteStore

    s = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'broken.sqlite3'}")
    await s.start()
    try:
        checkpointer = s._checkpointer
        assert checkpointer is not None and checkpointer._db is not None
        await checkpointer._call(checkpointer._db.close)  # every round now fails (ProgrammingError)
        cid = await conversation(s)
        first = await s.append(message(cid, "甲"))
        await asyncio.sleep(CHECKPOINT_INTERVAL_S * 3)
        assert "WAL checkpoint failed" in caplog.text
        second = await s.append(message(cid, "乙"))  # the writer is unaffected
        assert (first.seq, second.seq) == (1, 2)
        assert [m.text for m in await s.messages_after(cid, 0)] == ["甲", "乙"]
    finally:
        await s.close()


def test_ids_are_time_ordered_unique_and_keep_80_random_bits():
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(a[:12] <= b[:12] for a, b in itertools.pairwise(ids))  # within one millisecond: any order
    assert abs(int(ids[-1][:12], 16) / 1000 - time.time()) < 60
    assert len({i[12:] for i in ids}) == len(ids)  # the random part alone is unique too


async def test_postgres_group_commit_uses_one_statement_whatever_the_batch_size(pg_url: str):
    """The writer binds arrays (`unnest`, `= ANY`): an IN list or a multi-row VALUES would be a
    new statement for every batch size, prepared anew each time once asyncpg's cache overflows."""
    s = open_store(pg_url, batch_max=256)
    await s.start()
    try:
        cids = [await conversation(s) for _ in range(40)]
        prepared: list[set[str]] = []
        for size in (1, 7, 40):
            stored = await asyncio.gather(*(s.append(message(cids[i], f"第{size}批", client_id=f"b{size}-{i}"))
                                             for i in range(size)))
            assert all(not m.duplicate for m in stored)
            writer = s._raw._conn  # the group commit's own connection
            prepared.append({r["statement"] for r in await writer.fetch("SELECT statement FROM pg_prepared_statements")})
        resent = await s.append(message(cids[0], "第1批", client_id="b1-0"))
        assert resent.duplicate and resent.text == "第1批" and resent.seq == 1
        assert prepared[0] == prepared[1] == prepared[2], prepared  # no statement per batch size
        assert any("FOR UPDATE" in p for p in prepared[0]) and any("INSERT INTO messages" in p for p in prepared[0])
        assert await s.verify_chains() == []
    finally:
        await s.close()


async def test_postgres_writer_connection_killed_fails_that_batch_unacked_then_reconnects(pg_url: str):
    """The group commit's own connection dies (server restart, network): the batch it carried is
    not acknowledged, and the client's retry commits once on a new connection."""
    import asyncpg

    s = open_store(pg_url)
    await s.start()
    try:
        cid = await conversation(s)
        first = await s.append(message(cid, "之前", client_id="k-0"))
        old_pid = s._raw._conn.get_server_pid()
        admin = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
        finally:
            await admin.close()
        with pytest.raises(StorageUnavailable):
            await s.append(message(cid, "断线时", client_id="k-1"))
        retried = await s.append(message(cid, "断线时", client_id="k-1"))  # the client's retry
        assert not retried.duplicate and retried.seq == first.seq + 1
        assert s._raw._conn.get_server_pid() != old_pid
        assert [m.text for m in await s.messages_after(cid, 0)] == ["之前", "断线时"]
        assert await s.verify_chains() == []
    finally:
        await s.close()


async def test_postgres_batch_on_known_heads_is_one_statement_and_a_moved_head_falls_back(pg_url: str):
    """The writer remembers the heads it wrote (a new conversation's is seq 0): a batch on them is
    one statement that checks them under lock. Another node writing the same conversation moves
    the head; the statement then writes nothing and the locking transaction takes over, with no
    gap or fork in the chain."""
    a, b = open_store(pg_url), open_store(pg_url)
    await a.start()
    await b.start()
    try:
        cid = await conversation(a)
        await a.append(message(cid, "新会话", client_id="a-1"))
        await a.append(message(cid, "同一节点", client_id="a-2"))
        assert a._raw.batches == {"known": 2, "locked": 0}
        other = await b.append(message(cid, "另一节点", sender="s2", client_id="b-1"))
        assert other.seq == 3 and b._raw.batches == {"known": 0, "locked": 1}  # b guessed seq 0
        after = await a.append(message(cid, "回到本节点", client_id="a-3"))
        assert after.seq == 4 and a._raw.batches == {"known": 2, "locked": 1}
        again = await a.append(message(cid, "回到本节点", client_id="a-4"))
        assert again.seq == 5 and a._raw.batches == {"known": 3, "locked": 1}  # remembered again
        assert [m.seq for m in await a.messages_after(cid, 0)] == [1, 2, 3, 4, 5]
        assert await a.verify_chains() == []
    finally:
        await a.close()
        await b.close()


async def test_postgres_resend_on_a_known_head_is_answered_from_the_stored_message(pg_url: str):
    """A client id stored already makes the one-statement batch write nothing (not even the
    other messages of the batch); the locking transaction acks the resend as the duplicate and
    stores the rest once."""
    s = open_store(pg_url, batch_max=64)
    await s.start()
    try:
        cid = await conversation(s)
        first = await s.append(message(cid, "第一条", client_id="r-1"))
        resent, fresh = await asyncio.gather(s.append(message(cid, "第一条", client_id="r-1")),
                                             s.append(message(cid, "第二条", client_id="r-2")))
        assert resent.duplicate and resent.id == first.id and not fresh.duplicate and fresh.seq == 2
        assert s._raw.batches["locked"] == 1
        assert [m.text for m in await s.messages_after(cid, 0)] == ["第一条", "第二条"]
        assert await s.verify_chains() == []
    finally:
        await s.close()


async def test_postgres_one_batch_applies_bot_state_in_order_and_files_the_first_reply(pg_url: str):
    """Two bot turns of one chat in one batch change its row as two UPDATEs in turn would (the
    last value of a column wins, a column only the first set keeps it, None is a value); two
    advisor replies in one batch file the first."""
    s = open_store(pg_url, batch_max=64)
    await s.start()
    try:
        cid, other = await conversation(s), await conversation(s)
        await s.add_unanswered(other, new_id(), "营业部在哪", time.time())
        answer = NewMessage(conversation_id=cid, sender_id="bot", sender_role="bot", sender_name="智能助手",
                            kind="bot", text="请问您想了解哪方面？", created_at=time.time())
        advisor = replace(message(other, "地铁2号线旁边", sender="adv"), sender_role="advisor")
        results = await asyncio.gather(
            s.append_with_reply(message(cid, "开户", client_id="t-1"), answer,
                                {"intent": "account", "bot_state": {"misses": 1}, "legal_hold": True}),
            s.append_with_reply(message(cid, "算了", client_id="t-2"), answer, {"intent": None}),
            s.append(advisor, files_reply=True),
            s.append(replace(advisor, text="第二句"), files_reply=True),
        )
        assert [r[0].seq for r in results[:2]] == [1, 3] and s._raw.batches["locked"] == 0
        row = await s.get_conversation(cid)
        assert row.intent is None and row.bot_state == {"misses": 1} and row.legal_hold and row.last_seq == 4
        assert [u["advisor_reply"] for u in await s.list_unanswered()] == ["地铁2号线旁边"]
        assert await s.verify_chains() == []
    finally:
        await s.close()


async def test_postgres_writer_plans_each_statement_for_the_table_as_it_is(pg_url: str):
    """A prepared statement's generic plan, made while the tables were empty, is kept until the
    tables are analysed; on a server without autovacuum that is never, and the batch's lookups
    by client id scanned the whole messages table (docs/benchmarks/pipeline.md, seventh session).
    The writer's connection, and the pool's for reads, plan each execution afresh."""
    s = open_store(pg_url)
    await s.start()
    try:
        cid = await conversation(s)
        await s.append(message(cid, "计划", client_id="p-1"))
        writer = s._raw._conn
        assert await writer.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        assert await writer.fetchval("SHOW jit") == "off"
        async with s.read() as conn:
            assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar() == "force_custom_plan"
    finally:
        await s.close()


async def test_postgres_conversations_keep_room_for_head_updates(pg_url: str):
    """Migration 0002: each message moves its conversation's head; with half of each page free
    that is a HOT update, pruned without a vacuum (docs/architecture.md, storage)."""
    s = open_store(pg_url)
    await s.start()
    try:
        async with s.read() as conn:
            options = (await conn.execute(text(
                "SELECT reloptions FROM pg_class WHERE relname = 'conversations'"))).scalar()
        assert options == ["fillfactor=50"]
    finally:
        await s.close()
