"""Durable storage on SQLAlchemy 2 async: SqliteStore (embedded default) and PostgresStore.

Messages go through a group-commit writer: many appends share one transaction, and each
caller's future resolves only after that transaction committed (ack-after-commit).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import queue
import random
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    and_,
    bindparam,
    event,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chatserver.storage import schema as t
from chatserver.storage.records import (
    Conversation,
    Customer,
    NewMessage,
    StoredMessage,
    User,
    chain_hash,
    message_hash_fields,
)
from chatserver.tasks import stop_task

log = logging.getLogger("chatserver.storage")


class StorageUnavailable(Exception):
    """The database could not be reached or did not commit; nothing was acknowledged."""


class CircuitBreaker:
    """Fails database calls fast while the database is down: after `failures` consecutive errors
    it opens for `open_for_s`, then lets one probe through (half-open); a success closes it.

    Without it every send would wait out a connect timeout before answering `unavailable`."""

    def __init__(self, failures: int = 3, open_for_s: float = 3.0) -> None:
        self.failures = failures
        self.open_for_s = open_for_s
        self.consecutive = 0
        self.opened_until = 0.0
        self.probe_started = 0.0
        self.times_opened = 0

    @property
    def is_open(self) -> bool:
        return self.opened_until > 0.0

    def check(self) -> None:
        if not self.is_open:
            return
        now = time.monotonic()
        # One probe at a time; a probe that never reported back (cancelled) is replaced later.
        if now < self.opened_until or now - self.probe_started < self.open_for_s:
            raise StorageUnavailable("database unavailable (circuit open); retry with the same cid")
        self.probe_started = now

    def failed(self) -> None:
        self.consecutive += 1
        if self.is_open or self.consecutive >= self.failures:
            if not self.is_open:
                self.times_opened += 1
                log.warning("database circuit open after %d consecutive failures", self.consecutive)
            self.opened_until = time.monotonic() + self.open_for_s

    def succeeded(self) -> None:
        if self.is_open:
            log.warning("database circuit closed: the database answers again")
        self.consecutive = 0
        self.opened_until = 0.0
        self.probe_started = 0.0


class NotFound(Exception):
    pass


def new_id() -> str:
    """32 hex digits: milliseconds since the epoch (12), then 80 random bits (20), like UUIDv7.

    Time-ordered so that a table's primary-key index grows at its right edge: a random id
    dirtied one random leaf page per row, which each commit wrote to the WAL and each
    checkpoint to the database file (docs/benchmarks/pipeline.md, fifth session). The random
    part keeps ids unguessable and unique across processes and nodes; take it, not the prefix,
    where a short random token is wanted.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


@dataclass(slots=True)
class _Append:
    message: NewMessage
    future: asyncio.Future[StoredMessage]
    conversation_values: dict[str, Any] | None = None
    files_reply: bool = False
    # The bot's answer to `message`, stored right after it in the same transaction, and only if
    # `message` is new (a resent question is not answered twice).
    reply: NewMessage | None = None
    reply_stored: StoredMessage | None = None


GATHER_BELOW = 16  # the writer waits for more messages only when fewer than this many wait


def _gathers(gather_s: float, waiting: int, since_last_commit_s: float) -> bool:
    """Group commit, like PostgreSQL's commit_delay with commit_siblings: while messages stream
    in (the last commit only just ended) and few wait, a moment's wait lets one commit serve
    many. A message that finds the writer idle commits at once; under heavy load the queue is
    long and nothing waits."""
    return bool(gather_s) and waiting < GATHER_BELOW and since_last_commit_s < gather_s


@dataclass
class SharedRows:
    """How a store caches conversation rows that other nodes write too.

    `written(id)` tells the other nodes that this node wrote that row; `epoch()` names the
    current unbroken stretch of notices from them (None while they may be missed, e.g. the bus
    is down). Cached rows are dropped whenever the epoch changes, and each is read again at a
    random point between half and all of ttl_s after it was read: a last resort for a notice
    lost where no gap can show it (the cluster's heartbeats find the others within seconds,
    cluster.RowNotices), spread out so that rows cached together are not all read again at
    once (with a fixed 30 s the message path's reads of a thousand chats came in bursts that
    stalled a node; docs/benchmarks/pipeline.md, twelfth session).
    """

    written: Callable[[str], None]
    epoch: Callable[[], Hashable | None]
    ttl_s: float = 600.0
    cache_epoch: Hashable | None = None


@dataclass
class _Batch:
    """One writer batch: what is new, what repeats, and the rows the new messages become.

    The derived lists are computed once per batch (both writers read them twice).
    """

    items: list[_Append]
    results: dict[int, StoredMessage]
    repeats: dict[int, int]  # the same client id twice in one batch: index -> first index
    fresh: list[int]

    @classmethod
    def plan(cls, items: list[_Append], existing: dict[tuple[str, str], StoredMessage]) -> _Batch:
        results: dict[int, StoredMessage] = {}
        repeats: dict[int, int] = {}
        fresh: list[int] = []
        first_seen: dict[tuple[str, str], int] = {}
        for i, item in enumerate(items):
            m = item.message
            key = (m.sender_id, m.client_id) if m.client_id else None
            if key and key in existing:
                results[i] = existing[key]
            elif key and key in first_seen:
                repeats[i] = first_seen[key]
            else:
                if key:
                    first_seen[key] = i
                fresh.append(i)
        return cls(items, results, repeats, fresh)

    @staticmethod
    def client_keys(items: list[_Append]) -> list[tuple[str, str]]:
        return [(b.message.sender_id, b.message.client_id) for b in items if b.message.client_id]

    @functools.cached_property
    def fresh_messages(self) -> list[NewMessage]:
        """New messages in commit order: each new message, then the bot's answer riding on it."""
        out: list[NewMessage] = []
        for i in self.fresh:
            item = self.items[i]
            out.append(item.message)
            if item.reply is not None:
                out.append(item.reply)
        return out

    @functools.cached_property
    def riders(self) -> list[tuple[NewMessage, dict[str, Any]]]:
        """Conversation-row changes committed with a new message (the bot's state with its answer)."""
        return [(self.items[i].message, self.items[i].conversation_values or {})
                for i in self.fresh if self.items[i].conversation_values]

    @functools.cached_property
    def replies_to_file(self) -> list[dict[str, Any]]:
        """An advisor's first reply, kept beside the chat's unanswered questions for KB editors."""
        return [{"cid": self.items[i].message.conversation_id, "reply": self.items[i].message.text}
                for i in self.fresh if self.items[i].files_reply]


@dataclass
class _Rows:
    """The rows a batch of new messages writes, with the hash chain carried across them."""

    stored: list[StoredMessage]
    messages: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    holds: list[dict[str, Any]]
    heads: dict[str, tuple[int, str]]  # conversation id -> (last seq, last hash) after the batch

    @classmethod
    def build(cls, batch: list[NewMessage], heads: dict[str, tuple[int, str]]) -> _Rows:
        rows = cls([], [], [], [], [], dict(heads))
        seqs = rows.heads
        for m in batch:
            if m.conversation_id not in seqs:
                raise NotFound(m.conversation_id)
            last_seq, last_hash = seqs[m.conversation_id]
            stored = StoredMessage(
                id=new_id(), conversation_id=m.conversation_id, seq=last_seq + 1, sender_id=m.sender_id,
                sender_role=m.sender_role, sender_name=m.sender_name, kind=m.kind, text=m.text,
                verdict=m.verdict, created_at=m.created_at, client_id=m.client_id, meta=m.meta,
            )
            digest = chain_hash(last_hash, message_hash_fields(stored))
            stored = _with_hash(stored, digest)
            seqs[m.conversation_id] = (stored.seq, digest)
            rows.messages.append({
                "id": stored.id, "conversation_id": stored.conversation_id, "seq": stored.seq,
                "sender_id": stored.sender_id, "sender_role": stored.sender_role,
                "sender_name": stored.sender_name, "client_id": stored.client_id, "kind": stored.kind,
                "text": stored.text, "verdict": stored.verdict, "meta": stored.meta,
                "created_at": stored.created_at, "prev_hash": last_hash, "hash": digest,
            })
            for a in m.alerts:
                rows.alerts.append({**a, "message_id": stored.id, "conversation_id": m.conversation_id})
            if m.deliver_to_channel:
                rows.deliveries.append({
                    "id": new_id(), "message_id": stored.id, "conversation_id": m.conversation_id,
                    "channel": m.deliver_to_channel, "status": "pending", "attempts": 0,
                    "next_attempt_at": m.created_at,
                })
            if m.hold:
                rows.holds.append({"message_id": stored.id, "conversation_id": m.conversation_id,
                                   "state": "pending", "created_at": m.created_at})
            rows.stored.append(stored)
        return rows


class SQLStore:
    """Everything the hub stores. Subclasses differ only in engine setup and write locking."""

    dialect = "generic"

    def __init__(self, url: str, *, batch_max: int = 256, gather_s: float = 0.0):
        self.url = url
        self._batch_max = batch_max
        self._gather_s = gather_s
        self._last_commit_end = float("-inf")
        self.engine: AsyncEngine = self._create_engine(url)
        self._queue: asyncio.Queue[_Append] = asyncio.Queue()
        # The group commit: a task on the event loop here, a thread of its own for a SQLite file.
        self._writer: asyncio.Future[None] | None = None
        # The group commit's own connection (SQLite: a thread; PostgreSQL: asyncpg), set by
        # start(); without one the writer goes through the engine like every other write.
        self._raw: _RawWriter | _PgWriter | None = None
        self._write_lock = asyncio.Lock()
        self.breaker = CircuitBreaker()
        # Conversation rows by id, off unless cache_conversations() is called (one node only).
        self._conversations: OrderedDict[str, Conversation] | None = None
        self._conversation_cache_max = 0
        self._customers: OrderedDict[str, Customer] | None = None
        # Last write stamp per conversation, so a read that raced a row write is not cached.
        self._conversation_writes: dict[str, int] = {}
        # Newest committed seq per conversation. A message commit changes only the row's head,
        # so a read that raced one is still cached, with the head moved on to this seq.
        self._conversation_seqs: dict[str, int] = {}
        self._write_stamps = itertools.count(1)
        self._cache_generation = 0
        # Shared mode (several nodes): when each cached row is read again, and whom to tell of a write.
        self._shared: SharedRows | None = None
        self._expires_at: dict[str, float] = {}

    def cache_conversations(self, max_entries: int = 50_000, *, shared: SharedRows | None = None) -> None:
        """Serve get_conversation from memory, refreshed by every conversation write this store makes.

        Without `shared` this process must be the database's one writer (a single hub node); the
        cache is then always right (customer profiles are cached too). With `shared`, other nodes
        write rows as well: this store tells them of each row it writes, they drop theirs, and a
        cached row is used only by readers that accept one that may trail the database by the
        bus's latency (`recent_ok`), never longer than `shared.ttl_s`, and never while the bus
        (or a gap in the others' notices) cannot vouch for them. Either way it saves a database
        round trip per message.
        """
        self._conversations = OrderedDict()
        self._conversation_cache_max = max_entries
        self._shared = shared
        if shared is None:
            # Customer profiles (risk level, tier) too: each investor message needs its
            # customer's, and only upsert_customers writes them.
            self._customers = OrderedDict()

    def forget_conversation(self, conversation_id: str) -> None:
        """Another node wrote this row: drop it, and keep a read in flight from caching it."""
        if self._conversations is not None:
            self._conversation_writes[conversation_id] = next(self._write_stamps)
            self._conversations.pop(conversation_id, None)
            self._expires_at.pop(conversation_id, None)

    def _forget_conversations(self) -> None:
        if self._conversations:
            self._conversations.clear()
        if self._customers:
            self._customers.clear()
        self._expires_at.clear()
        self._cache_generation += 1

    def _write_stamp(self, conversation_id: str) -> int:
        """Taken before a row write: _conversation_written(since=) then knows if another came between."""
        return self._conversation_writes.get(conversation_id, 0)

    def _conversation_written(self, conversation_id: str, last_seq: int | None = None, *,
                              changes: dict[str, Any] | None = None, since: int | None = None) -> None:
        """After a committed (or failed) write: advance the cached row's last_seq, apply the
        committed `changes` to it, or (anything else) drop it. With `since` (the row's write
        stamp when this write began) the changes apply only if no other write of the row ended
        meanwhile: two racing writes may finish in either order, so the row is read afresh."""
        cache = self._conversations
        if cache is None:
            return
        if last_seq is None:
            raced = since is not None and self._conversation_writes.get(conversation_id, 0) != since
            self._conversation_writes[conversation_id] = next(self._write_stamps)
            cached = cache.pop(conversation_id, None)
            if (cached is not None and changes is not None and not raced
                    and changes.keys() <= _CONVERSATION_FIELDS):
                cache[conversation_id] = replace(cached, **changes)
            if self._shared is not None:
                if conversation_id not in cache:
                    self._expires_at.pop(conversation_id, None)
                self._shared.written(conversation_id)
        else:
            seqs = self._conversation_seqs
            seqs[conversation_id] = max(last_seq, seqs.get(conversation_id, 0))
            cached = cache.get(conversation_id)
            if cached is not None and last_seq > cached.last_seq:
                cache[conversation_id] = replace(cached, last_seq=last_seq)
        if len(self._conversation_writes) + len(self._conversation_seqs) > 2 * self._conversation_cache_max:
            # Stamps only matter while a read is in flight; a new generation voids those reads.
            self._conversation_writes.clear()
            self._conversation_seqs.clear()
            self._cache_generation += 1

    # -- lifecycle -------------------------------------------------------------------------
    def _create_engine(self, url: str) -> AsyncEngine:
        return create_async_engine(url)

    async def start(self) -> None:
        await self.migrate()
        self._raw = await self._open_raw_writer()
        self._writer = self._start_writer()

    def _start_writer(self) -> asyncio.Future[None]:
        return asyncio.create_task(self._write_loop(), name="store-writer")

    def _enqueue(self, item: _Append) -> None:
        self._queue.put_nowait(item)

    async def _stop_writer(self, writer: asyncio.Future[None]) -> None:
        # Everything already accepted is committed (or failed back to its sender) before the
        # writer stops: waiting for an empty queue alone could cancel a commit in flight.
        if not writer.done():
            await self._queue.join()
        await stop_task(writer)

    async def _open_raw_writer(self) -> _RawWriter | _PgWriter | None:
        """The group commit's own connection; None: the writer goes through the engine."""
        return None

    async def close(self) -> None:
        if self._writer is not None:
            await self._stop_writer(self._writer)
            self._writer = None
        await self.engine.dispose()
        if self._raw is not None:
            await self._raw.close()
            self._raw = None

    async def migrate(self) -> None:
        from chatserver.storage.migrate import upgrade_to_head

        async with self.write() as conn:
            await conn.run_sync(upgrade_to_head)

    @asynccontextmanager
    async def seeding(self) -> AsyncIterator[None]:
        """Held while a node seeds shipped rows (KB, rules, quick replies, demo people).

        One process per SQLite file needs no lock; PostgreSQL overrides this so nodes starting
        together on an empty database seed one after another instead of colliding.
        """
        yield

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
        except (OSError, DBAPIError, OperationalError):
            return False
        self.breaker.succeeded()  # the readiness probe doubles as the half-open probe
        return True

    @asynccontextmanager
    async def write(self, *, conversation_rows: bool = True) -> AsyncIterator[AsyncConnection]:
        """One write transaction; StorageUnavailable if the database cannot take it.

        `conversation_rows=False` promises the transaction changes no conversation row (or keeps
        the conversation cache right itself); any other write empties that cache afterwards.
        """
        self.breaker.check()
        try:
            async with self._write_guard(), self._begin() as conn:
                yield conn
        except IntegrityError:
            self.breaker.succeeded()
            raise
        except (OSError, DBAPIError, OperationalError, ConnectionError) as exc:
            self.breaker.failed()
            raise StorageUnavailable(str(exc).splitlines()[0]) from exc
        finally:
            if conversation_rows:
                self._forget_conversations()
        self.breaker.succeeded()

    def _begin(self) -> Any:
        return self.engine.begin()

    def _write_guard(self) -> Any:
        return _NullAsyncContext()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        self.breaker.check()
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (OSError, DBAPIError, OperationalError, ConnectionError) as exc:
            self.breaker.failed()
            raise StorageUnavailable(str(exc).splitlines()[0]) from exc
        self.breaker.succeeded()

    # -- messages: the group-commit writer -------------------------------------------------------
    async def append(self, message: NewMessage, *, conversation_values: dict[str, Any] | None = None,
                     files_reply: bool = False) -> StoredMessage:
        """Store one message; returns only after commit. Idempotent on (sender_id, client_id).

        `conversation_values` changes the message's conversation row in the same transaction
        (the bot's state with the bot's answer): one commit, and one fsync, instead of two.
        `files_reply` keeps this (advisor's) text beside the chat's unanswered questions, in the
        same transaction too.
        """
        item = _Append(message, self._new_future(), conversation_values, files_reply)
        self._enqueue(item)
        return await item.future

    async def append_with_reply(self, message: NewMessage, reply: NewMessage,
                                conversation_values: dict[str, Any] | None = None
                                ) -> tuple[StoredMessage, StoredMessage | None]:
        """Store a question and the bot's answer in one transaction (one commit, one fsync).

        The answer gets the next seq; `conversation_values` (the bot's state) change the row in
        the same transaction. A resent question (same client id) comes back as the duplicate it
        is, with no answer stored: the first attempt was answered already.
        """
        item = _Append(message, self._new_future(), conversation_values, reply=reply)
        self._enqueue(item)
        stored = await item.future
        return stored, item.reply_stored

    def _new_future(self) -> asyncio.Future[StoredMessage]:
        if self._writer is None or self._writer.done():
            raise StorageUnavailable("store is not running")
        return asyncio.get_running_loop().create_future()

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            loop = asyncio.get_running_loop()
            if _gathers(self._gather_s, self._queue.qsize(), loop.time() - self._last_commit_end):
                await asyncio.sleep(self._gather_s)
            batch = [first]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit_batch(batch)
            except IntegrityError:
                # A concurrent node stored one of these client ids first: redo one by one so
                # the duplicate resolves to the stored message and the others still commit.
                for item in batch:
                    await self._commit_one(item)
            except StorageUnavailable as exc:
                _fail(batch, exc)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one batch
                log.exception("message batch failed")
                _fail(batch, StorageUnavailable(f"store error: {exc}"))
            finally:
                self._last_commit_end = asyncio.get_running_loop().time()
                for _ in batch:
                    self._queue.task_done()

    async def _commit_one(self, item: _Append) -> None:
        try:
            await self._commit_batch([item])
        except IntegrityError as exc:
            _fail([item], StorageUnavailable(f"conflict: {exc.orig}"))
        except StorageUnavailable as exc:
            _fail([item], exc)

    async def _commit_batch(self, items: list[_Append]) -> None:
        raw = self._raw
        if not isinstance(raw, _PgWriter):
            # (A SQLite file's batches commit on its writer's thread: SqliteStore._start_writer.)
            await self._commit_batch_on_engine(items)
            return
        self.breaker.check()
        try:
            async with self._write_guard():
                batch, rows = await raw.commit(items)
        except raw.CONFLICTS as exc:
            self.breaker.succeeded()
            raise IntegrityError("group commit", None, exc) from exc
        except raw.FAILURES as exc:
            self.breaker.failed()
            raise _unavailable(exc) from exc
        self.breaker.succeeded()
        self._batch_committed(batch, rows)

    async def _commit_batch_on_engine(self, items: list[_Append]) -> None:
        async with self.write(conversation_rows=False) as conn:
            batch = _Batch.plan(items, await self._existing_by_client_id(conn, _Batch.client_keys(items)))
            rows = None
            if batch.fresh:
                heads = await self._lock_conversations(conn, list({m.conversation_id for m in batch.fresh_messages}))
                rows = _Rows.build(batch.fresh_messages, heads)
                await self._insert_rows(conn, rows)
            for m, values in batch.riders:
                await conn.execute(
                    update(t.conversations).where(t.conversations.c.id == m.conversation_id)
                    .values(updated_at=m.created_at, **values)
                )
            if batch.replies_to_file:
                await conn.execute(
                    update(t.unanswered)
                    .where(t.unanswered.c.conversation_id == bindparam("cid"), t.unanswered.c.advisor_reply.is_(None))
                    .values(advisor_reply=bindparam("reply")),
                    batch.replies_to_file,
                )
        self._batch_committed(batch, rows)

    def _batch_committed(self, batch: _Batch, rows: _Rows | None) -> None:
        """After commit: the cached heads move on and every caller gets its message."""
        if rows is not None:
            stored = iter(rows.stored)
            for i in batch.fresh:
                batch.results[i] = next(stored)
                if batch.items[i].reply is not None:
                    batch.items[i].reply_stored = next(stored)
            for s in rows.stored:
                self._conversation_written(s.conversation_id, s.seq)
        for m, values in batch.riders:
            self._conversation_written(m.conversation_id, changes={"updated_at": m.created_at, **values})
        for i, first in batch.repeats.items():
            batch.results[i] = _as_duplicate(batch.results[first])
        for i, item in enumerate(batch.items):
            if not item.future.done():
                item.future.set_result(batch.results[i])

    async def _existing_by_client_id(
        self, conn: AsyncConnection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredMessage]:
        if not keys:
            return {}
        rows = await conn.execute(
            select(t.messages).where(tuple_(t.messages.c.sender_id, t.messages.c.client_id).in_(keys))
        )
        return {(r.sender_id, r.client_id): _as_duplicate(_message(r)) for r in rows}

    async def _lock_conversations(self, conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[int, str]]:
        # Sorted so two nodes locking the same rows always take them in the same order.
        rows = await conn.execute(
            select(t.conversations.c.id, t.conversations.c.last_seq, t.conversations.c.last_hash)
            .where(t.conversations.c.id.in_(sorted(ids)))
            .order_by(t.conversations.c.id)
            .with_for_update()
        )
        return {r.id: (r.last_seq, r.last_hash) for r in rows}

    async def _insert_rows(self, conn: AsyncConnection, rows: _Rows) -> None:
        await conn.execute(t.messages.insert(), rows.messages)
        await conn.execute(
            update(t.conversations)
            .where(t.conversations.c.id == bindparam("cid"))
            .values(last_seq=bindparam("seq"), last_hash=bindparam("h")),
            [{"cid": cid, "seq": s, "h": h} for cid, (s, h) in rows.heads.items()],
        )
        if rows.alerts:
            await conn.execute(t.alerts.insert(), rows.alerts)
        if rows.deliveries:
            await conn.execute(t.channel_deliveries.insert(), rows.deliveries)
        if rows.holds:
            await conn.execute(t.holds.insert(), rows.holds)

    async def messages_after(
        self, conversation_id: str, after_seq: int, limit: int = 1000
    ) -> list[StoredMessage]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.messages)
                .where(t.messages.c.conversation_id == conversation_id, t.messages.c.seq > after_seq)
                .order_by(t.messages.c.seq)
                .limit(limit)
            )
            return [_message(r) for r in rows]

    async def get_message(self, message_id: str) -> StoredMessage | None:
        async with self.read() as conn:
            row = (await conn.execute(select(t.messages).where(t.messages.c.id == message_id))).first()
            return _message(row) if row else None

    async def held_message_ids(self, conversation_id: str, states: Iterable[str] = ("pending", "rejected")) -> set[str]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.holds.c.message_id).where(
                    t.holds.c.conversation_id == conversation_id, t.holds.c.state.in_(list(states))
                )
            )
            return {r.message_id for r in rows}

    # -- users and customers ---------------------------------------------------------------
    async def create_user(self, user: User, now: float) -> User:
        async with self.write(conversation_rows=False) as conn:
            await conn.execute(t.users.insert().values(
                id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                password_hash=user.password_hash, customer_id=user.customer_id, groups=list(user.groups),
                licences=list(user.licences), team=user.team, capacity=user.capacity,
                disabled=user.disabled, created_at=now,
            ))
        return user

    async def update_user(self, user_id: str, **values: Any) -> None:
        async with self.write() as conn:
            await conn.execute(update(t.users).where(t.users.c.id == user_id).values(**values))

    async def get_user(self, user_id: str) -> User | None:
        return await self._one_user(t.users.c.id == user_id)

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._one_user(t.users.c.username == username)

    async def _one_user(self, where: Any) -> User | None:
        async with self.read() as conn:
            row = (await conn.execute(select(t.users).where(where))).first()
            return _user(row) if row else None

    async def list_users(self, role: str | None = None) -> list[User]:
        async with self.read() as conn:
            q = select(t.users).order_by(t.users.c.username)
            if role:
                q = q.where(t.users.c.role == role)
            return [_user(r) for r in await conn.execute(q)]

    async def upsert_customers(self, items: Sequence[Customer], now: float) -> int:
        async with self.write() as conn:
            ids = [c.id for c in items]
            present = {r.id for r in await conn.execute(select(t.customers.c.id).where(t.customers.c.id.in_(ids)))}
            for c in items:
                values = _customer_values(c, now)
                if c.id in present:
                    await conn.execute(update(t.customers).where(t.customers.c.id == c.id).values(**values))
                else:
                    await conn.execute(t.customers.insert().values(id=c.id, **values))
        return len(items)

    async def get_customer(self, customer_id: str) -> Customer | None:
        cache = self._customers
        if cache is not None and (cached := cache.get(customer_id)) is not None:
            return cached
        generation = self._cache_generation
        async with self.read() as conn:
            row = (await conn.execute(select(t.customers).where(t.customers.c.id == customer_id))).first()
        customer = _customer(row) if row else None
        if cache is not None and customer is not None and generation == self._cache_generation:
            # Written customers empty the cache (write() moves the generation on), so a read
            # that raced an upsert is not kept.
            cache[customer_id] = customer
            if len(cache) > self._conversation_cache_max:
                cache.popitem(last=False)
        return customer

    async def list_customers(self, limit: int = 500) -> list[Customer]:
        async with self.read() as conn:
            rows = await conn.execute(select(t.customers).order_by(t.customers.c.id).limit(limit))
            return [_customer(r) for r in rows]

    # -- conversations ---------------------------------------------------------------------
    async def create_conversation(self, conv: Conversation) -> Conversation:
        async with self.write(conversation_rows=False) as conn:
            await conn.execute(t.conversations.insert().values(
                id=conv.id, investor_id=conv.investor_id, customer_id=conv.customer_id,
                channel=conv.channel, state=conv.state, group_name=conv.group_name,
                advisor_id=conv.advisor_id, intent=conv.intent, bot_state=conv.bot_state,
                last_seq=0, last_hash="", legal_hold=False, created_at=conv.created_at,
                updated_at=conv.created_at,
            ))
        return conv

    async def get_conversation(self, conversation_id: str, *, recent_ok: bool = False) -> Conversation | None:
        """The conversation row. On a single node it comes from memory when cached. With several
        nodes only a `recent_ok` reader gets a cached row: the message path, which tolerates the
        same race with another node's write that a database read has (see cache_conversations).
        """
        cache = self._conversations
        shared = self._shared
        if cache is not None and shared is not None and not self._shared_cache_usable(shared, cache):
            cache = None
        if cache is not None and (recent_ok or shared is None):
            cached = cache.get(conversation_id)
            if cached is not None and (shared is None or time.monotonic() < self._expires_at[conversation_id]):
                cache.move_to_end(conversation_id)
                return cached
        before = (self._cache_generation, self._conversation_writes.get(conversation_id, 0))
        async with self.read() as conn:
            row = (await conn.execute(
                select(t.conversations).where(t.conversations.c.id == conversation_id)
            )).first()
        conv = _conversation(row) if row else None
        after = (self._cache_generation, self._conversation_writes.get(conversation_id, 0))
        if cache is not None and conv is not None and before == after:
            head = self._conversation_seqs.get(conversation_id, 0)
            if head > conv.last_seq:
                conv = replace(conv, last_seq=head)
            cache[conversation_id] = conv
            cache.move_to_end(conversation_id)
            if shared is not None:
                self._expires_at[conversation_id] = time.monotonic() + shared.ttl_s * (0.5 + random.random() / 2)
            if len(cache) > self._conversation_cache_max:
                evicted, _ = cache.popitem(last=False)
                self._expires_at.pop(evicted, None)
        return conv

    def _shared_cache_usable(self, shared: SharedRows, cache: OrderedDict[str, Conversation]) -> bool:
        """Whether other nodes' notices are reaching us; a gap in them empties the cache."""
        epoch = shared.epoch()
        if epoch != shared.cache_epoch:
            cache.clear()
            self._expires_at.clear()
            self._cache_generation += 1
            shared.cache_epoch = epoch
        return epoch is not None

    async def open_conversation_for(self, investor_id: str, channel: str) -> Conversation | None:
        async with self.read() as conn:
            row = (await conn.execute(
                select(t.conversations)
                .where(t.conversations.c.investor_id == investor_id, t.conversations.c.channel == channel,
                       t.conversations.c.state != "closed")
                .order_by(t.conversations.c.created_at.desc())
                .limit(1)
            )).first()
            return _conversation(row) if row else None

    async def update_conversation(self, conversation_id: str, now: float, **values: Any) -> None:
        """Change a conversation row; a cached copy is dropped, so the next read sees the database
        (which an operator's `chatserver purge` in another process may also have changed)."""
        try:
            async with self.write(conversation_rows=False) as conn:
                await conn.execute(
                    update(t.conversations).where(t.conversations.c.id == conversation_id)
                    .values(updated_at=now, **values)
                )
        finally:
            self._conversation_written(conversation_id)

    async def take_conversation(self, conv: Conversation, advisor_id: str, now: float) -> bool:
        """Assign `conv` to `advisor_id` only if its row is still as read (compare-and-set).

        During a routing failover a stale ex-leader and the new leader may both assign the same
        chat: only the first write lands. A cached copy of the row takes the assignment (the
        chat's next message needs no read); one that lost the race is dropped.
        """
        c = t.conversations.c
        since = self._write_stamp(conv.id)
        taken = False
        try:
            async with self.write(conversation_rows=False) as conn:
                result = await conn.execute(
                    update(t.conversations)
                    .where(c.id == conv.id, c.state == conv.state, c.advisor_id.is_not_distinct_from(conv.advisor_id))
                    .values(state="assigned", advisor_id=advisor_id, updated_at=now)
                )
            taken = result.rowcount == 1
        finally:
            changes = {"state": "assigned", "advisor_id": advisor_id, "updated_at": now} if taken else None
            self._conversation_written(conv.id, changes=changes, since=since)
        return taken

    async def list_conversations(
        self, *, investor_id: str | None = None, advisor_id: str | None = None,
        customer_id: str | None = None, states: Sequence[str] | None = None, limit: int = 200,
    ) -> list[Conversation]:
        q = select(t.conversations).order_by(t.conversations.c.created_at.desc()).limit(limit)
        if investor_id:
            q = q.where(t.conversations.c.investor_id == investor_id)
        if advisor_id:
            q = q.where(t.conversations.c.advisor_id == advisor_id)
        if customer_id:
            q = q.where(t.conversations.c.customer_id == customer_id)
        if states:
            q = q.where(t.conversations.c.state.in_(list(states)))
        async with self.read() as conn:
            return [_conversation(r) for r in await conn.execute(q)]

    # -- ratings ---------------------------------------------------------------------------------
    async def add_rating(self, conversation_id: str, investor_id: str, advisor_id: str | None,
                         score: int, comment: str | None, now: float) -> bool:
        """False if this conversation was already rated (a rating is given once)."""
        try:
            async with self.write() as conn:
                await conn.execute(t.ratings.insert().values(
                    conversation_id=conversation_id, investor_id=investor_id, advisor_id=advisor_id,
                    score=score, comment=comment, created_at=now,
                ))
            return True
        except IntegrityError:
            return False

    async def get_rating(self, conversation_id: str) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(t.ratings).where(t.ratings.c.conversation_id == conversation_id))).first()
            return _row_dict(row) if row else None

    async def satisfaction_by_advisor(self, since: float) -> dict[str, float]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.ratings.c.advisor_id, func.avg(t.ratings.c.score))
                .where(t.ratings.c.created_at >= since, t.ratings.c.advisor_id.is_not(None))
                .group_by(t.ratings.c.advisor_id)
            )
            return {r[0]: float(r[1]) for r in rows}

    # -- alerts ------------------------------------------------------------------------------
    async def list_alerts(self, *, state: str | None = None, advisor_id: str | None = None,
                          rule_id: str | None = None, tier: str | None = None,
                          since: float | None = None, until: float | None = None,
                          limit: int = 200) -> list[dict[str, Any]]:
        q = _alert_query().order_by(t.alerts.c.created_at.desc()).limit(limit)
        for column, value in ((t.alerts.c.state, state), (t.alerts.c.sender_id, advisor_id),
                              (t.alerts.c.rule_id, rule_id), (t.alerts.c.tier, tier)):
            if value:
                q = q.where(column == value)
        if since is not None:
            q = q.where(t.alerts.c.created_at >= since)
        if until is not None:
            q = q.where(t.alerts.c.created_at < until)
        async with self.read() as conn:
            return [_row_dict(r) for r in await conn.execute(q)]

    async def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(_alert_query().where(t.alerts.c.id == alert_id))).first()
            return _row_dict(row) if row else None

    async def update_alert(self, alert_id: str, expected_states: Sequence[str], **values: Any) -> bool:
        """Compare-and-set so two supervisors acting at once cannot both move an alert."""
        async with self.write() as conn:
            result = await conn.execute(
                update(t.alerts)
                .where(t.alerts.c.id == alert_id, t.alerts.c.state.in_(list(expected_states)))
                .values(**values)
            )
            return bool(result.rowcount)

    async def alert_stats(self) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.alerts.c.rule_id, t.alerts.c.category, t.alerts.c.disposition, func.count())
                .group_by(t.alerts.c.rule_id, t.alerts.c.category, t.alerts.c.disposition)
            )
            stats: dict[str, dict[str, Any]] = {}
            for rule_id, category, disposition, count in rows:
                s = stats.setdefault(rule_id, {"rule_id": rule_id, "category": category, "hits": 0,
                                               "false_positive": 0, "confirmed": 0, "coached": 0})
                s["hits"] += count
                if disposition in ("false_positive", "confirmed", "coached"):
                    s[disposition] += count
            for s in stats.values():
                judged = s["false_positive"] + s["confirmed"] + s["coached"]
                s["false_positive_rate"] = s["false_positive"] / judged if judged else None
            return sorted(stats.values(), key=lambda s: -s["hits"])

    # -- holds (four-eyes) -------------------------------------------------------------------------
    async def decide_hold(self, message_id: str, state: str, by: str, now: float) -> bool:
        async with self.write() as conn:
            result = await conn.execute(
                update(t.holds).where(t.holds.c.message_id == message_id, t.holds.c.state == "pending")
                .values(state=state, decided_by=by, decided_at=now)
            )
            return bool(result.rowcount)

    async def list_holds(self, state: str = "pending") -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.holds, t.messages.c.text, t.messages.c.sender_id, t.messages.c.sender_name)
                .join(t.messages, t.messages.c.id == t.holds.c.message_id)
                .where(t.holds.c.state == state).order_by(t.holds.c.created_at)
            )
            return [_row_dict(r) for r in rows]

    # -- audit trail: hash-chained per conversation ------------------------------------------
    async def audit(self, chain: str, actor_id: str | None, action: str, detail: dict[str, Any] | None,
                    now: float) -> None:
        async with self.write(conversation_rows=False) as conn:
            if self.dialect == "postgresql":
                # FOR UPDATE on the chain's last row does not stop two writers reading the same
                # head (both then insert seq N+1); one lock per chain and transaction does.
                await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("audit:" + chain))))
            last = (await conn.execute(
                select(t.audit_events.c.chain_seq, t.audit_events.c.hash)
                .where(t.audit_events.c.chain == chain)
                .order_by(t.audit_events.c.chain_seq.desc()).limit(1).with_for_update()
            )).first()
            seq, prev = (last.chain_seq, last.hash) if last else (0, "")
            record = {"id": new_id(), "chain": chain, "chain_seq": seq + 1, "actor_id": actor_id,
                      "action": action, "detail": detail, "created_at": now}
            await conn.execute(t.audit_events.insert().values(
                **record, prev_hash=prev, hash=chain_hash(prev, record)
            ))

    async def audit_events(self, chain: str) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.audit_events).where(t.audit_events.c.chain == chain).order_by(t.audit_events.c.chain_seq)
            )
            return [_row_dict(r) for r in rows]

    async def latest_audit(self, chain: str, action: str) -> dict[str, Any] | None:
        """The newest audit event of one action in a chain (e.g. the access lists in force)."""
        async with self.read() as conn:
            row = (await conn.execute(
                select(t.audit_events)
                .where(t.audit_events.c.chain == chain, t.audit_events.c.action == action)
                .order_by(t.audit_events.c.chain_seq.desc())
                .limit(1)
            )).first()
        return _row_dict(row) if row else None

    async def verify_chains(self) -> list[str]:
        """Every problem found in the message and audit hash chains; empty means intact."""
        problems: list[str] = []
        async with self.read() as conn:
            heads = {r.id: (r.last_seq, r.last_hash) for r in await conn.execute(
                select(t.conversations.c.id, t.conversations.c.last_seq, t.conversations.c.last_hash))}
            current: str | None = None
            prev, expected_seq = "", 1
            result = await conn.stream(select(t.messages).order_by(t.messages.c.conversation_id, t.messages.c.seq))
            seen: set[str] = set()
            async for r in result:
                if r.conversation_id != current:
                    _check_tail(current, prev, expected_seq, heads, problems)
                    current, prev, expected_seq = r.conversation_id, "", 1
                    seen.add(current)
                row = _row_dict(r)
                if r.seq != expected_seq:
                    problems.append(f"conversation {current}: seq {expected_seq} missing (found {r.seq})")
                if r.prev_hash != prev:
                    problems.append(f"conversation {current} seq {r.seq}: previous-hash link broken")
                if chain_hash(r.prev_hash, message_hash_fields(row)) != r.hash:
                    problems.append(f"conversation {current} seq {r.seq}: content does not match its hash")
                prev, expected_seq = r.hash, r.seq + 1
            _check_tail(current, prev, expected_seq, heads, problems)
            for cid, (last_seq, _) in heads.items():
                if cid not in seen and last_seq:
                    problems.append(f"conversation {cid}: all {last_seq} messages missing")
            chain, prev, expected_seq = None, "", 1
            async for r in await conn.stream(select(t.audit_events).order_by(t.audit_events.c.chain, t.audit_events.c.chain_seq)):
                if r.chain != chain:
                    chain, prev, expected_seq = r.chain, "", 1
                record = {k: getattr(r, k) for k in ("id", "chain", "chain_seq", "actor_id", "action", "detail", "created_at")}
                if r.chain_seq != expected_seq or r.prev_hash != prev:
                    problems.append(f"audit chain {chain}: record {expected_seq} missing or out of order")
                if chain_hash(r.prev_hash, record) != r.hash:
                    problems.append(f"audit chain {chain} record {r.chain_seq}: content does not match its hash")
                prev, expected_seq = r.hash, r.chain_seq + 1
        return problems

    # -- channels ------------------------------------------------------------------------------
    async def put_channel(self, name: str, secret: str, callback_url: str | None, enabled: bool, now: float) -> None:
        async with self.write() as conn:
            exists = (await conn.execute(select(t.channels.c.name).where(t.channels.c.name == name))).first()
            values = {"secret": secret, "callback_url": callback_url, "enabled": enabled, "updated_at": now}
            if exists:
                await conn.execute(update(t.channels).where(t.channels.c.name == name).values(**values))
            else:
                await conn.execute(t.channels.insert().values(name=name, **values))

    async def get_channel(self, name: str) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(t.channels).where(t.channels.c.name == name))).first()
            return _row_dict(row) if row else None

    async def channel_user(self, channel: str, external_id: str) -> str | None:
        async with self.read() as conn:
            row = (await conn.execute(select(t.channel_users.c.user_id).where(
                t.channel_users.c.channel == channel, t.channel_users.c.external_id == external_id))).first()
            return row.user_id if row else None

    async def link_channel_user(self, channel: str, external_id: str, user: User, now: float) -> str:
        """Create the investor behind an external channel user, once; returns the user id."""
        try:
            async with self.write() as conn:
                await conn.execute(t.users.insert().values(
                    id=user.id, username=user.username, display_name=user.display_name, role="investor",
                    groups=[], licences=[], disabled=False, created_at=now,
                ))
                await conn.execute(t.channel_users.insert().values(
                    channel=channel, external_id=external_id, user_id=user.id))
            return user.id
        except IntegrityError:
            existing = await self.channel_user(channel, external_id)
            if existing is None:
                raise
            return existing

    async def due_deliveries(self, now: float, limit: int = 100) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(t.channel_deliveries, t.messages)
                .join(t.messages, t.messages.c.id == t.channel_deliveries.c.message_id)
                .where(t.channel_deliveries.c.status == "pending", t.channel_deliveries.c.next_attempt_at <= now)
                .order_by(t.channel_deliveries.c.next_attempt_at).limit(limit)
            )
            return [_row_dict(r) for r in rows]

    async def record_delivery(self, delivery_id: str, *, status: str, attempts: int,
                              next_attempt_at: float, error: str | None, now: float) -> None:
        async with self.write() as conn:
            values: dict[str, Any] = {"status": status, "attempts": attempts, "next_attempt_at": next_attempt_at,
                                      "delivered_at": now if status == "delivered" else None}
            if error is not None:  # a later success keeps the last failure on record for operators
                values["last_error"] = error
            await conn.execute(update(t.channel_deliveries).where(t.channel_deliveries.c.id == delivery_id).values(**values))

    async def deliveries_for(self, conversation_id: str) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(select(t.channel_deliveries).where(
                t.channel_deliveries.c.conversation_id == conversation_id))
            return [_row_dict(r) for r in rows]

    # -- versioned documents: knowledge base and compliance rules --------------------------------
    async def latest_version(self, kind: str) -> tuple[int, str] | None:
        table = _versioned(kind)
        async with self.read() as conn:
            row = (await conn.execute(select(table.c.version, table.c.jsonl).order_by(table.c.version.desc()).limit(1))).first()
            return (row.version, row.jsonl) if row else None

    async def add_version(self, kind: str, jsonl: str, by: str | None, comment: str | None, now: float) -> int:
        table = _versioned(kind)
        async with self.write() as conn:
            top = (await conn.execute(select(func.max(table.c.version)))).scalar() or 0
            await conn.execute(table.insert().values(version=top + 1, jsonl=jsonl, created_by=by, created_at=now, comment=comment))
            return int(top + 1)

    async def list_versions(self, kind: str) -> list[dict[str, Any]]:
        table = _versioned(kind)
        async with self.read() as conn:
            rows = await conn.execute(select(table.c.version, table.c.created_by, table.c.created_at, table.c.comment).order_by(table.c.version.desc()))
            return [_row_dict(r) for r in rows]

    # -- quick replies and the learning loop --------------------------------------------------------
    async def quick_replies_for(self, user: User) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(select(t.quick_replies).where(or_(
                t.quick_replies.c.owner_id == user.id,
                and_(t.quick_replies.c.owner_id.is_(None), or_(t.quick_replies.c.team.is_(None), t.quick_replies.c.team == user.team)),
            )).order_by(t.quick_replies.c.title))
            return [_row_dict(r) for r in rows]

    async def seed_quick_replies(self, items: Sequence[dict[str, Any]], now: float) -> int:
        """Install the shipped templates once, on a store that has none yet."""
        async with self.write() as conn:
            if (await conn.execute(select(func.count()).select_from(t.quick_replies))).scalar():
                return 0
            if items:
                await conn.execute(t.quick_replies.insert(), [{**i, "updated_at": now} for i in items])
            return len(items)

    async def put_quick_reply(self, item: dict[str, Any], now: float) -> None:
        async with self.write() as conn:
            await conn.execute(t.quick_replies.delete().where(t.quick_replies.c.id == item["id"]))
            await conn.execute(t.quick_replies.insert().values(**item, updated_at=now))

    async def add_unanswered(self, conversation_id: str, message_id: str, question: str, now: float) -> None:
        async with self.write(conversation_rows=False) as conn:
            await conn.execute(t.unanswered.insert().values(
                id=new_id(), conversation_id=conversation_id, message_id=message_id, question=question, created_at=now))

    async def list_unanswered(self, limit: int = 2000) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(select(t.unanswered).where(t.unanswered.c.resolved.is_(False))
                                      .order_by(t.unanswered.c.created_at.desc()).limit(limit))
            return [_row_dict(r) for r in rows]

    # -- retention ----------------------------------------------------------------------------
    async def purge_closed_before(self, cutoff: float) -> int:
        """Delete transcripts closed before cutoff, never one under legal hold. Returns how many."""
        async with self.write() as conn:
            ids = [r.id for r in await conn.execute(select(t.conversations.c.id).where(
                t.conversations.c.state == "closed", t.conversations.c.closed_at < cutoff,
                t.conversations.c.legal_hold.is_(False)))]
            for table, column in ((t.messages, t.messages.c.conversation_id), (t.alerts, t.alerts.c.conversation_id),
                                  (t.holds, t.holds.c.conversation_id), (t.unanswered, t.unanswered.c.conversation_id),
                                  (t.channel_deliveries, t.channel_deliveries.c.conversation_id),
                                  (t.ratings, t.ratings.c.conversation_id)):
                if ids:
                    await conn.execute(table.delete().where(column.in_(ids)))
            if ids:
                await conn.execute(t.conversations.delete().where(t.conversations.c.id.in_(ids)))
        for conversation_id in ids:
            self._conversation_written(conversation_id)
        return len(ids)


class SqliteStore(SQLStore):
    """The embedded default: one file, WAL, full fsync; writes in this process take turns.

    The group-commit writer does not go through SQLAlchemy: a thread of its own holds a plain
    `sqlite3` connection and runs a whole batch (look up resent client ids, read the heads,
    insert, move the heads, commit) in one hop, with statements derived once from the same
    tables. Every other write still goes through the engine, behind the same write lock.
    """

    dialect = "sqlite"

    def __init__(self, url: str, *, batch_max: int = 256, gather_s: float = 0.0, busy_timeout_s: float = 30.0):
        self.busy_timeout_s = busy_timeout_s  # how long a write waits for another process's lock
        self._path = url.split("///", 1)[1] if "///" in url else ""
        self._checkpointer: _Checkpointer | None = None
        super().__init__(url, batch_max=batch_max, gather_s=gather_s)

    def _create_engine(self, url: str) -> AsyncEngine:
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": self.busy_timeout_s})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # We emit BEGIN ourselves (below), so the driver must not: the pysqlite recipe.
            dbapi_conn.isolation_level = None
            _set_pragmas(dbapi_conn)

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers take the file lock up front: with several processes (serve --workers) a
            # deferred BEGIN could read a conversation's last seq, then fail to upgrade its lock.
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    async def _open_raw_writer(self) -> _RawWriter | None:
        if not self._path or self._path == ":memory:":
            return None
        self._checkpointer = await _Checkpointer.open(self._path, self.busy_timeout_s)
        return await _RawWriter.open(self._path, self.busy_timeout_s)

    async def close(self) -> None:
        await super().close()  # drains the writer first
        if self._checkpointer is not None:
            await self._checkpointer.close()
            self._checkpointer = None

    # The group commit of a SQLite file runs on the writer's thread, not as a task on the
    # event loop: appends go straight into its queue, it commits what waits and hands the
    # outcome back. The loop no longer wakes a task for each batch, hops to the thread and back
    # and resumes the task before the next batch can start (a batch's turn took 7.1 ms in the
    # loop's view vs 4.7 ms on the thread at ~2,100 messages/s, and the writer was busy 86% of
    # the time: docs/benchmarks/pipeline.md, tenth session).
    def _start_writer(self) -> asyncio.Future[None]:
        if not isinstance(self._raw, _RawWriter):
            return super()._start_writer()
        return self._raw.serve(self._batch_max, self._gather_s, self._committed)

    def _enqueue(self, item: _Append) -> None:
        raw = self._raw
        if not isinstance(raw, _RawWriter):
            super()._enqueue(item)
            return
        try:
            self.breaker.check()
        except StorageUnavailable as exc:
            item.future.set_exception(exc)
            return
        raw.put(item)

    async def _stop_writer(self, writer: asyncio.Future[None]) -> None:
        raw = self._raw
        if not isinstance(raw, _RawWriter):
            await super()._stop_writer(writer)
            return
        raw.stop()  # after what is already queued: all of it is committed first
        await writer

    def _committed(self, outcomes: list[_Outcome]) -> None:
        """On the event loop: the writer thread's outcome of one batch (of several, one message
        each, if the batch met a client id another process stored meanwhile)."""
        for items, result, exc in outcomes:
            try:
                if exc is not None:
                    raise exc
                assert result is not None
                self.breaker.succeeded()
                self._batch_committed(*result)
            except _RawWriter.CONFLICTS as conflict:
                self.breaker.succeeded()
                _fail(items, StorageUnavailable(f"conflict: {conflict}"))
            except _RawWriter.FAILURES as failure:
                self.breaker.failed()
                _fail(items, _unavailable(failure))
            except Exception as error:  # noqa: BLE001 - every caller gets an answer
                log.error("message batch failed", exc_info=error)
                _fail(items, StorageUnavailable(f"store error: {error}"))
        if self._checkpointer is not None:
            self._checkpointer.due()

    def _begin(self) -> Any:
        return self.engine.execution_options(sqlite_immediate=True).begin()

    def _write_guard(self) -> Any:
        # SQLite has one writer; taking turns avoids SQLITE_BUSY on lock upgrades (its retries
        # sleep). Engine writes take turns among themselves, then with the writer thread.
        if isinstance(self._raw, _RawWriter):
            return _engine_turn(self._write_lock, self._raw.turn)
        return self._write_lock


@asynccontextmanager
async def _engine_turn(lock: asyncio.Lock, turn: _WriteTurn) -> AsyncIterator[None]:
    async with lock, turn.engine():
        yield


# Each message lands on a random leaf of three indexes and its conversation's row: a commit
# writes every page it touched, whole, to the WAL. 1 KiB pages instead of SQLite's 4 KiB cut
# that write to a third (an isolated test: 304 -> 101 MB of WAL for 1,000 commits of 20
# messages, commits 2.7x faster in all; reads of a chat's latest 50 messages unchanged).
SQLITE_PAGE_SIZE = 1024

# A commit that takes the WAL past SQLite's checkpoint threshold (1,000 pages by default)
# copies the WAL into the database file and fsyncs it before it returns: under load one commit
# in a few hundred took 100-400 ms, and every message in its batch and queued behind it waited
# (docs/benchmarks/pipeline.md, fifth session). The _Checkpointer does that copy on a
# connection and thread of its own, so the commit that crosses the threshold only copies what
# the checkpointer has not reached yet. But while messages flow the threshold is also what
# rewinds the WAL: SQLite rewinds it only when a write begins with every frame copied, and the
# writer commits while each of the checkpointer's rounds runs. That commit still syncs the
# database file's scattered pages: 20-53 ms on the development machine, at ~2,100 messages/s
# every ~1.35 s with a threshold of 16,384 pages, and 86-100% of the slowest 1% of messages were
# in flight during one (docs/benchmarks/pipeline.md, eleventh session). At 65,536 pages the
# rewind comes four times less often. The size limit on the WAL file is above the size it then
# reaches (68.7 MB with 1 KiB pages), so the file is not cut back and regrown every cycle.
WAL_AUTOCHECKPOINT_PAGES = 65536
WAL_SIZE_LIMIT_BYTES = 128 * 1024 * 1024
CHECKPOINT_INTERVAL_S = 0.25  # after a commit; commits meanwhile share the checkpoint


def _set_pragmas(dbapi_conn: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # a new file only; fixed once it has tables
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an ack survives power loss, not just a crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    cursor.close()


class _SqliteThread:
    """A plain sqlite3 connection on a thread of its own; every call on it goes through that thread."""

    _CHECK_SAME_THREAD = True  # sqlite3's guard against using the connection from another thread

    def __init__(self, path: str, busy_timeout_s: float, thread_name: str) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    def _call(self, fn: Any, *args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _connect(self) -> None:
        self._db = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None,
                                   check_same_thread=self._CHECK_SAME_THREAD)
        _set_pragmas(self._db)

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _close_connection(self) -> None:
        await self._call(self._disconnect)
        self._thread.shutdown(wait=True)


class _Checkpointer(_SqliteThread):
    """Copies the WAL into the database file off the commit path, a moment after commits.

    PASSIVE: it waits for nobody and nobody waits for it; readers and the writer go on, and
    frames a reader still needs are copied by a later round. A failed round is logged; the
    next commit asks again, and SQLite's own threshold still bounds the WAL meanwhile.
    """

    def __init__(self, path: str, busy_timeout_s: float) -> None:
        super().__init__(path, busy_timeout_s, "sqlite-checkpoint")
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str, busy_timeout_s: float) -> _Checkpointer:
        checkpointer = cls(path, busy_timeout_s)
        await checkpointer._call(checkpointer._connect)
        checkpointer._task = asyncio.create_task(checkpointer._run(), name="sqlite-checkpoint")
        return checkpointer

    def due(self) -> None:
        """A commit added to the WAL."""
        self._due.set()

    async def close(self) -> None:
        await stop_task(self._task)
        await self._close_connection()

    async def _run(self) -> None:
        while True:
            await self._due.wait()
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            self._due.clear()
            try:
                await self._call(self._checkpoint)
            except (sqlite3.Error, OSError):
                log.warning("WAL checkpoint failed; the next commit asks again", exc_info=True)

    def _checkpoint(self) -> None:
        assert self._db is not None
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class _WriteTurn:
    """Whose turn it is to write the SQLite file: the writer thread's batches or a transaction
    of the engine's (every write that is not a message). One at a time, so neither meets
    SQLITE_BUSY, whose retries sleep. When both wait they alternate: a batch follows one another
    all the time, so an engine write waiting goes before the next batch, and a batch waiting
    goes before the next engine write (a burst of them, a restart's requeues say, cannot hold
    the messages back; engine writes take turns among themselves before they come here)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._engine_waiting = 0
        self._writer_waiting = False
        self._engine_went_last = False

    @contextmanager
    def writer(self) -> Iterator[None]:
        """The writer thread's turn, for one batch."""
        with self._changed:
            self._writer_waiting = True
            while self._busy or (self._engine_waiting and not self._engine_went_last):
                self._changed.wait()
            self._writer_waiting = False
            self._busy = True
            self._engine_went_last = False
        try:
            yield
        finally:
            self._give_back()

    @asynccontextmanager
    async def engine(self) -> AsyncIterator[None]:
        """An engine write's turn, taken on the event loop; a wait happens on a worker thread."""
        if not self._take_for_engine(wait=False):
            taking = asyncio.get_running_loop().run_in_executor(None, self._take_for_engine, True)
            try:
                await asyncio.shield(taking)
            except asyncio.CancelledError:
                # The turn comes all the same: give it back as soon as it does.
                taking.add_done_callback(lambda _: self._give_back())
                raise
        try:
            yield
        finally:
            self._give_back()

    def _take_for_engine(self, wait: bool) -> bool:
        with self._changed:
            if not wait and (self._busy or (self._writer_waiting and self._engine_went_last)):
                return False
            self._engine_waiting += 1
            try:
                while self._busy or (self._writer_waiting and self._engine_went_last):
                    self._changed.wait()
            finally:
                self._engine_waiting -= 1
            self._busy = True
            self._engine_went_last = True
            return True

    def _give_back(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()


# A batch's outcome, handed from the writer thread to the event loop: its appends, then what
# the commit returned or the error it raised.
_Outcome = tuple[list[_Append], "tuple[_Batch, _Rows | None] | None", BaseException | None]


class _RawWriter(_SqliteThread):
    """A thread holding a plain sqlite3 connection: the group commit of a SQLite file.

    `serve` runs the commit loop on a thread: it takes what waits in the queue (after a
    moment's gather while messages stream in), commits it in one transaction and hands the
    outcome to the event loop, then takes the next batch without waiting for the loop. The
    connection is opened and closed on the executor's thread and used by the commit loop's
    thread in between: one thread at a time."""

    _CHECK_SAME_THREAD = False

    CONFLICTS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    FAILURES: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    _CHUNK = 400  # bound parameters per IN (...) list, well under SQLite's limit

    def __init__(self, path: str, busy_timeout_s: float) -> None:
        super().__init__(path, busy_timeout_s, "sqlite-writer")
        self._inserts = {table.name: _RawInsert(table)
                         for table in (t.messages, t.alerts, t.channel_deliveries, t.holds)}
        self._waiting: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self.turn = _WriteTurn()
        self.batch_sizes: deque[int] = deque(maxlen=256)  # the latest batches' sizes, newest last

    def put(self, item: _Append) -> None:
        self._waiting.put(item)

    def stop(self) -> None:
        """`serve` returns once everything put before this is committed."""
        self._waiting.put(None)

    def serve(self, batch_max: int, gather_s: float, done: Callable[[list[_Outcome]], None]) -> asyncio.Future[None]:
        """Run the group commit on the thread until `stop`; `done` gets each batch's outcome on
        the event loop, in commit order."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            try:
                self._serve(loop, batch_max, gather_s, done)
            finally:
                with suppress(RuntimeError):  # the loop closed first: nobody waits
                    loop.call_soon_threadsafe(_resolve, finished)

        # A daemon thread: a process that ends without closing its store is not kept alive by a
        # commit loop waiting for messages (an executor's threads are joined at exit).
        threading.Thread(target=run, name="sqlite-writer", daemon=True).start()
        return finished

    def _serve(self, loop: asyncio.AbstractEventLoop, batch_max: int, gather_s: float,
               done: Callable[[list[_Outcome]], None]) -> None:
        waiting = self._waiting
        last_commit_end = float("-inf")
        stopping = False
        while not stopping:
            first = waiting.get()
            if first is None:
                return
            if _gathers(gather_s, waiting.qsize(), time.monotonic() - last_commit_end):
                time.sleep(gather_s)
            batch = [first]
            while len(batch) < batch_max:
                try:
                    item = waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                outcomes = self._commit_in_turn(batch)
                self.batch_sizes.append(len(batch))
            except Exception as exc:  # noqa: BLE001 - the writer outlives any one batch (the loop logs it)
                outcomes = [(batch, None, exc)]
            last_commit_end = time.monotonic()
            try:
                loop.call_soon_threadsafe(done, outcomes)
            except RuntimeError:
                log.error("event loop closed with %d messages committed but not acknowledged", len(batch))
                return

    def _commit_in_turn(self, batch: list[_Append]) -> list[_Outcome]:
        with self.turn.writer():
            try:
                return [(batch, self._commit(batch), None)]
            except self.CONFLICTS:
                # Another process stored one of these client ids first: one by one, so the
                # duplicate resolves to the stored message and the others still commit.
                return [self._commit_alone(item) for item in batch]
            except Exception as exc:  # noqa: BLE001 - the loop on the other side reports it
                return [(batch, None, exc)]

    def _commit_alone(self, item: _Append) -> _Outcome:
        try:
            return ([item], self._commit([item]), None)
        except Exception as exc:  # noqa: BLE001 - as _commit_in_turn
            return ([item], None, exc)

    @classmethod
    async def open(cls, path: str, busy_timeout_s: float) -> _RawWriter:
        writer = cls(path, busy_timeout_s)
        await writer._call(writer._connect)
        return writer

    async def close(self) -> None:
        await self._close_connection()

    def _commit(self, items: list[_Append]) -> tuple[_Batch, _Rows | None]:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            batch = _Batch.plan(items, self._existing(db, _Batch.client_keys(items)))
            rows = None
            if batch.fresh:
                rows = _Rows.build(batch.fresh_messages, self._heads(db, {m.conversation_id for m in batch.fresh_messages}))
                self._insert(db, rows)
            for m, values in batch.riders:
                values = {"updated_at": m.created_at, **values}
                names = list(values)
                db.execute(f"UPDATE conversations SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                           [_raw_value(t.conversations, n, values[n]) for n in names] + [m.conversation_id])
            if batch.replies_to_file:
                db.executemany("UPDATE unanswered SET advisor_reply = ? WHERE conversation_id = ? AND advisor_reply IS NULL",
                               [(r["reply"], r["cid"]) for r in batch.replies_to_file])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return batch, rows

    def _existing(self, db: sqlite3.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], StoredMessage]:
        # Joined against the (sender_id, client_id) unique index: `client_id IN (...)` alone
        # would scan the whole messages table on every batch.
        found: dict[tuple[str, str], StoredMessage] = {}
        unique = sorted(set(keys))
        columns = ", ".join(f"m.{c}" for c in _MESSAGE_COLUMNS)
        for start in range(0, len(unique), self._CHUNK // 2):
            chunk = unique[start:start + self._CHUNK // 2]
            rows = db.execute(
                f"SELECT {columns} FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS k "
                "JOIN messages AS m ON m.sender_id = k.column1 AND m.client_id = k.column2",
                [value for key in chunk for value in key])
            for row in rows:
                stored = _raw_duplicate(row)
                found[(stored.sender_id, stored.client_id or "")] = stored
        return found

    def _heads(self, db: sqlite3.Connection, ids: set[str]) -> dict[str, tuple[int, str]]:
        # One result row (a JSON array) rather than one per conversation: every row fetched is
        # a trip out of and back into the GIL for this thread.
        heads: dict[str, tuple[int, str]] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), self._CHUNK):
            chunk = ordered[start:start + self._CHUNK]
            (packed,) = db.execute(
                "SELECT json_group_array(json_array(id, last_seq, last_hash)) FROM conversations "
                f"WHERE id IN ({', '.join('?' * len(chunk))})", chunk).fetchone()
            for cid, seq, digest in orjson.loads(packed):
                heads[cid] = (seq, digest)
        return heads

    def _insert(self, db: sqlite3.Connection, rows: _Rows) -> None:
        self._inserts["messages"].run(db, rows.messages)
        heads = list(rows.heads.items())
        for start in range(0, len(heads), self._CHUNK // 3):
            chunk = heads[start:start + self._CHUNK // 3]
            db.execute(
                "UPDATE conversations SET last_seq = v.column2, last_hash = v.column3 "
                f"FROM (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS v WHERE conversations.id = v.column1",
                [value for cid, (seq, digest) in chunk for value in (cid, seq, digest)])
        self._inserts["alerts"].run(db, rows.alerts)
        self._inserts["channel_deliveries"].run(db, rows.deliveries)
        self._inserts["holds"].run(db, rows.holds)


_SQLITE_MAX_VARIABLES = 32766  # SQLite 3.32 and later


class _RawInsert:
    """INSERT for one table from row dicts, with the table's scalar defaults and JSON columns."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._defaults = {c.name: c.default.arg for c in table.columns
                          if c.default is not None and getattr(c.default, "is_scalar", False)}
        self._json = {c.name for c in table.columns if isinstance(c.type, JSON)}

    def values(self, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
        """The column names and each row's values, defaults filled in, JSON as SQLAlchemy binds
        it on both databases: text, None as 'null'."""
        names = list(dict.fromkeys([*rows[0], *self._defaults]))
        defaults = [self._defaults.get(n) for n in names]
        encoded = [i for i, n in enumerate(names) if n in self._json]
        values: list[list[Any]] = []
        for r in rows:
            row = [r.get(n, d) for n, d in zip(names, defaults, strict=True)]
            for i in encoded:
                row[i] = _json_text(row[i])
            values.append(row)
        return names, values

    def run(self, db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        names, values = self.values(rows)
        flat = [v for row in values for v in row]
        # Multi-row INSERTs: one SQLite step (one GIL round trip) per statement, not per row.
        per_row = f"({', '.join('?' * len(names))})"
        rows_per_statement = max(1, _SQLITE_MAX_VARIABLES // len(names))
        for start in range(0, len(rows), rows_per_statement):
            count = min(rows_per_statement, len(rows) - start)
            db.execute(f"INSERT INTO {self._table.name} ({', '.join(names)}) VALUES {', '.join([per_row] * count)}",
                       flat[start * len(names):(start + count) * len(names)])


# The columns a resent message's stored row is read back with.
_MESSAGE_COLUMNS = ("id", "conversation_id", "seq", "sender_id", "sender_role", "sender_name", "kind",
                    "text", "verdict", "created_at", "client_id", "meta", "hash")


def _raw_duplicate(row: Sequence[Any]) -> StoredMessage:
    """A stored message read back by a raw writer (columns as _MESSAGE_COLUMNS, meta as JSON text)."""
    record = dict(zip(_MESSAGE_COLUMNS, row, strict=True))
    record["meta"] = orjson.loads(record["meta"]) if record["meta"] is not None else None
    return StoredMessage(**record, duplicate=True)


def _json_text(value: Any) -> str:
    """A JSON column's value as SQLAlchemy binds it on both databases: text, None as 'null'."""
    return orjson.dumps(value).decode()


def _raw_value(table: Any, name: str, value: Any) -> Any:
    """A value as SQLAlchemy would bind it on SQLite: JSON as text (None as 'null'), bool as int."""
    if isinstance(table.c[name].type, JSON):
        return _json_text(value)
    if isinstance(value, bool):
        return int(value)
    return value


class PostgresStore(SQLStore):
    """Shared store for several hub nodes; row locks keep seqs gap-free across nodes."""

    dialect = "postgresql"

    def _create_engine(self, url: str) -> AsyncEngine:
        # Reads plan each execution too (_PgWriter.SERVER_SETTINGS): a resume's messages_after
        # must not keep a plan made when the table was empty.
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                                   connect_args={"timeout": PG_CONNECT_TIMEOUT_S, "command_timeout": PG_COMMAND_TIMEOUT_S,
                                                 "server_settings": _PgWriter.SERVER_SETTINGS})

    async def _open_raw_writer(self) -> _PgWriter:
        return _PgWriter(self.url)

    async def migrate(self) -> None:
        from sqlalchemy import text

        from chatserver.storage.migrate import upgrade_to_head

        async with self.write() as conn:
            # Nodes starting together on an empty database would race to create the schema
            # (duplicate alembic_version); this lock, held until commit, makes them take turns.
            await conn.execute(text("SELECT pg_advisory_xact_lock(7351100)"))
            await conn.run_sync(upgrade_to_head)

    @asynccontextmanager
    async def seeding(self) -> AsyncIterator[None]:
        from sqlalchemy import text

        # A session lock on its own connection: the seeding steps commit in their own
        # transactions, and the next node starts only after the last of them committed.
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(7351101)"))
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(7351101)"))
                await conn.commit()


_NEW_HEAD = (0, "")  # a conversation's head before its first message
# The batch's heads ($1, sorted ids), locked in id order: two nodes locking the same rows always
# take them in the same order.
_LOCK_HEADS = ("h AS (SELECT id, last_seq, last_hash FROM conversations WHERE id = ANY($1::text[]) "
               "ORDER BY id FOR UPDATE)")


def _stored_client_ids(senders: int, clients: int) -> str:
    """FROM/JOIN of the stored messages m whose (sender, client id) is one of the batch's pairs,
    given as arrays $senders and $clients (looked up through the unique index)."""
    return (f"FROM unnest(${senders}::text[], ${clients}::text[]) AS k(sender_id, client_id) "
            "JOIN messages AS m ON m.sender_id = k.sender_id AND m.client_id = k.client_id")


class _PgWriter:
    """The group commit on an asyncpg connection of its own: no pool checkout and ping per
    batch, no SQLAlchemy compile and greenlet hop per statement (those were about half of the
    group commit's time on the event loop at 1,700/s: docs/benchmarks/pipeline.md, sixth session).

    Round trips, not statements, are what a batch waits for (each resumes on the hub's busy
    event loop), so a batch is one statement whose text depends only on which kinds of rows it
    writes, fed by arrays: `_commit_known` on the heads this writer remembers, and the locking
    transaction (`_commit`) only when that check fails. The connection opens with the first
    batch and is dropped after any failure, so the next batch after an outage connects afresh;
    it plans every execution (SERVER_SETTINGS), since the tables grow from empty and a server
    without autovacuum never analyses them: a cached generic plan from the first minutes
    scanned the whole messages table for the client-id check (benchmarks/pipeline.md, seventh
    session).
    """

    CONFLICTS: tuple[type[BaseException], ...] = (asyncpg.UniqueViolationError,)
    FAILURES: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

    # The locking transaction's read: the heads, locked, and the stored messages of resent client ids.
    _READ = (
        f"WITH {_LOCK_HEADS} "
        "SELECT (SELECT json_agg(json_build_array(id, last_seq, last_hash)) FROM h), "
        f"(SELECT json_agg(json_build_array({', '.join(f'm.{c}' for c in _MESSAGE_COLUMNS)})) "
        f"{_stored_client_ids(2, 3)})"
    )
    # `_commit_known`'s check, in the statement that writes: $1 the batch's conversations (sorted),
    # $2/$3 their remembered heads, $4/$5 the batch's (sender, client id) pairs. Locks as _READ.
    _KNOWN = (
        f"{_LOCK_HEADS}, "
        "ok AS (SELECT (SELECT count(*) FROM h JOIN unnest($1::text[], $2::bigint[], $3::text[]) "
        "AS e(id, last_seq, last_hash) ON h.id = e.id AND h.last_seq = e.last_seq "
        "AND h.last_hash = e.last_hash) = cardinality($1::text[]) "
        f"AND NOT EXISTS (SELECT 1 {_stored_client_ids(4, 5)}) AS ok)"
    )
    _INSERTS = {table.name: _RawInsert(table) for table in (t.messages, t.alerts, t.channel_deliveries, t.holds)}
    SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan", "jit": "off"}
    # Heads remembered from this writer's own commits (a conversation's chain moves on here
    # unless another node writes to it too); the least recently written are forgotten first.
    KNOWN_HEADS = 20_000

    def __init__(self, url: str) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: asyncpg.Connection | None = None
        self._heads: dict[str, tuple[int, str]] = {}
        self.batches = {"known": 0, "locked": 0}  # batches committed by each path (tests, profiling)

    async def commit(self, items: list[_Append]) -> tuple[_Batch, _Rows | None]:
        try:
            if self._conn is None:
                self._conn = await asyncpg.connect(self._dsn, timeout=PG_CONNECT_TIMEOUT_S,
                                                   command_timeout=PG_COMMAND_TIMEOUT_S,
                                                   server_settings=self.SERVER_SETTINGS)
            done = await self._commit_known(self._conn, items)
            if done is None:
                async with self._conn.transaction():
                    done = await self._commit(self._conn, items)
                self.batches["locked"] += 1
            else:
                self.batches["known"] += 1
            batch, rows = done
            if rows is not None:
                self._remember(rows.heads)
            return done
        except self.CONFLICTS:
            self._heads.clear()
            raise
        except BaseException:
            # Whatever broke (the server, the network, a timeout, a cancel mid-statement), the
            # next batch starts on a new connection rather than one in an unknown state.
            await self.close()
            raise

    async def _commit_known(self, conn: asyncpg.Connection, items: list[_Append]) -> tuple[_Batch, _Rows] | None:
        """The batch in one round trip: one statement, a transaction of its own, that locks the
        heads, checks that they are the ones this writer remembers (a conversation it has not
        written yet is taken to be new: seq 0, no hash) and that no client id of the batch is
        stored already, and writes only if so. None when it wrote nothing (a head moved by
        another node or unknown, a resend): the caller runs the locking transaction instead."""
        known = self._heads
        ids = sorted({item.message.conversation_id for item in items})
        heads = {cid: known.get(cid, _NEW_HEAD) for cid in ids}
        batch = _Batch.plan(items, {})
        keys = _Batch.client_keys(items)
        params: list[Any] = [ids, [heads[cid][0] for cid in ids], [heads[cid][1] for cid in ids],
                             [k[0] for k in keys], [k[1] for k in keys]]
        rows = _Rows.build(batch.fresh_messages, heads)
        if await conn.fetchval(self._statement(batch, rows, params, self._KNOWN), *params):
            return batch, rows
        for cid in ids:
            known.pop(cid, None)
        return None

    def _remember(self, moved: dict[str, tuple[int, str]]) -> None:
        heads = self._heads
        for cid, head in moved.items():
            heads.pop(cid, None)  # re-inserted last: the dict's order is least recently written first
            heads[cid] = head
        while len(heads) > self.KNOWN_HEADS:
            del heads[next(iter(heads))]

    async def _commit(self, conn: asyncpg.Connection, items: list[_Append]) -> tuple[_Batch, _Rows | None]:
        keys = _Batch.client_keys(items)
        # Every conversation of the batch is locked, a resent message's too: one statement.
        ids = sorted({item.message.conversation_id for item in items})
        heads_json, existing_json = await conn.fetchrow(self._READ, ids, [k[0] for k in keys], [k[1] for k in keys])
        heads = {cid: (seq, digest) for cid, seq, digest in orjson.loads(heads_json or "[]")}
        existing: dict[tuple[str, str], StoredMessage] = {}
        for row in orjson.loads(existing_json or "[]"):
            stored = StoredMessage(**dict(zip(_MESSAGE_COLUMNS, row, strict=True)), duplicate=True)
            existing[(stored.sender_id, stored.client_id or "")] = stored
        batch = _Batch.plan(items, existing)
        if not batch.fresh:
            return batch, None  # every message was stored already
        rows = _Rows.build(batch.fresh_messages, heads)
        params: list[Any] = []
        await conn.execute(self._statement(batch, rows, params), *params)
        return batch, rows

    @staticmethod
    def _statement(batch: _Batch, rows: _Rows, params: list[Any], guard: str = "") -> str:
        """Everything a batch writes, as one statement of data-modifying WITH parts fed by
        arrays (one statement text per combination of parts present, whatever the batch size):
        the messages, any alerts, outbox rows and holds; the heads moved, with the bot's state
        and intent where an answer rides on a question (`_Batch.riders`, applied in order, the
        last value of a column winning, as one UPDATE per rider would); advisors' first replies
        filed beside unanswered questions. With `guard` (a WITH part named ok, its parameters in
        `params` already), every part writes only if ok holds, and the statement returns ok."""
        parts: list[str] = [guard] if guard else []
        only_if = " AND (SELECT ok FROM ok)" if guard else ""
        for table, table_rows in ((t.messages, rows.messages), (t.alerts, rows.alerts),
                                  (t.channel_deliveries, rows.deliveries), (t.holds, rows.holds)):
            if table_rows:
                names, values = _PgWriter._INSERTS[table.name].values(table_rows)
                select = _pg_unnest_select(table, names, [list(c) for c in zip(*values, strict=True)], params)
                parts.append(f"w{len(parts)} AS (INSERT INTO {table.name} ({', '.join(names)}) {select}"
                             + (" WHERE (SELECT ok FROM ok)" if guard else "") + ")")
        changes: dict[str, dict[str, Any]] = {}
        for m, values in batch.riders:
            changes.setdefault(m.conversation_id, {}).update({"updated_at": m.created_at, **values})
        moved = list(rows.heads.items())
        params += [[cid for cid, _ in moved], [seq for _, (seq, _d) in moved], [digest for _, (_s, digest) in moved]]
        arrays = [f"${len(params) - 2}::text[]", f"${len(params) - 1}::bigint[]", f"${len(params)}::text[]"]
        names = ["id", "last_seq", "last_hash"]
        assignments = ["last_seq = v.last_seq", "last_hash = v.last_hash"]
        for n in dict.fromkeys(n for values in changes.values() for n in values):
            column = t.conversations.c[n]
            is_json = isinstance(column.type, JSON)
            given = [cid in changes and n in changes[cid] for cid, _ in moved]
            column_values = [changes[cid][n] if has else None for (cid, _), has in zip(moved, given, strict=True)]
            if is_json:  # sent as text, cast back
                column_values = [_json_text(v) if has else None for v, has in zip(column_values, given, strict=True)]
            params.append(column_values)
            params.append(given)
            array_type = "text" if is_json else _PG_ARRAY_TYPES.get(type(column.type), "text")
            arrays += [f"${len(params) - 1}::{array_type}[]", f"${len(params)}::boolean[]"]
            names += [n, f"set_{n}"]
            assignments.append(f"{n} = CASE WHEN v.set_{n} THEN v.{n}{'::json' if is_json else ''} ELSE c.{n} END")
        parts.append(f"w{len(parts)} AS (UPDATE conversations AS c SET {', '.join(assignments)} "
                     f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) WHERE c.id = v.id{only_if})")
        if batch.replies_to_file:
            first: dict[str, str] = {}
            for r in batch.replies_to_file:
                first.setdefault(r["cid"], r["reply"])  # one UPDATE per reply: the first one files
            params.append(list(first))
            params.append(list(first.values()))
            parts.append(f"w{len(parts)} AS (UPDATE unanswered AS u SET advisor_reply = f.reply "
                         f"FROM unnest(${len(params) - 1}::text[], ${len(params)}::text[]) AS f(cid, reply) "
                         f"WHERE u.conversation_id = f.cid AND u.advisor_reply IS NULL{only_if})")
        return "WITH " + ", ".join(parts) + (" SELECT ok FROM ok" if guard else " SELECT 1")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._heads.clear()
        if conn is not None and not conn.is_closed():
            conn.terminate()


def _pg_unnest_select(table: Any, names: list[str], columns: list[list[Any]], params: list[Any]) -> str:
    """`SELECT ... FROM unnest($n::type[], ...)` over one array per column (appended to params),
    JSON columns sent as text and cast back."""
    arrays, selected = [], []
    for name, values in zip(names, columns, strict=True):
        params.append(values)
        kind = table.c[name].type
        json = isinstance(kind, JSON)
        arrays.append(f"${len(params)}::{'text' if json else _PG_ARRAY_TYPES.get(type(kind), 'text')}[]")
        selected.append(f"u.{name}::json" if json else f"u.{name}")
    return f"SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})"


_PG_ARRAY_TYPES = {BigInteger: "bigint", Integer: "integer", Float: "float8", Boolean: "boolean"}


# The writer's connection, as the engine's: fail fast when the server is away.
PG_CONNECT_TIMEOUT_S = 5.0
PG_COMMAND_TIMEOUT_S = 30.0


def open_store(url: str, *, batch_max: int = 256, gather_s: float = 0.0) -> SQLStore:
    if url.startswith("sqlite"):
        return SqliteStore(url, batch_max=batch_max, gather_s=gather_s)
    if url.startswith("postgresql"):
        return PostgresStore(url, batch_max=batch_max, gather_s=gather_s)
    raise ValueError(f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite+aiosqlite or postgresql+asyncpg")


class _NullAsyncContext:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _alert_query() -> Any:
    """Alerts with the flagged message's text and the chat's advisor, as the alert desk shows them."""
    return (select(t.alerts, t.messages.c.text, t.conversations.c.advisor_id)
            .outerjoin(t.messages, t.messages.c.id == t.alerts.c.message_id)
            .outerjoin(t.conversations, t.conversations.c.id == t.alerts.c.conversation_id))


def _row_dict(row: Any) -> dict[str, Any]:
    """A plain dict with str keys (row mappings use SQLAlchemy's str subclass, which orjson refuses)."""
    return {str(k): v for k, v in row._mapping.items()}


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _unavailable(exc: BaseException) -> StorageUnavailable:
    return StorageUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _fail(batch: list[_Append], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _versioned(kind: str) -> Any:
    return {"kb": t.kb_versions, "rules": t.rule_versions}[kind]


def _check_tail(cid: str | None, prev: str, expected_seq: int, heads: dict[str, Any], problems: list[str]) -> None:
    if cid is None or cid not in heads:
        return
    last_seq, last_hash = heads[cid]
    if expected_seq - 1 != last_seq or prev != last_hash:
        problems.append(f"conversation {cid}: ends at seq {expected_seq - 1} but its head says {last_seq}")


def _with_hash(m: StoredMessage, digest: str) -> StoredMessage:
    from dataclasses import replace

    return replace(m, hash=digest)


def _as_duplicate(m: StoredMessage) -> StoredMessage:
    from dataclasses import replace

    return replace(m, duplicate=True)


def _message(r: Any) -> StoredMessage:
    return StoredMessage(
        id=r.id, conversation_id=r.conversation_id, seq=r.seq, sender_id=r.sender_id,
        sender_role=r.sender_role, sender_name=r.sender_name, kind=r.kind, text=r.text,
        verdict=r.verdict, created_at=r.created_at, client_id=r.client_id, meta=r.meta, hash=r.hash,
    )


def _user(r: Any) -> User:
    return User(
        id=r.id, username=r.username, display_name=r.display_name, role=r.role,
        customer_id=r.customer_id, groups=tuple(r.groups or ()), licences=tuple(r.licences or ()),
        team=r.team, capacity=r.capacity, disabled=bool(r.disabled), password_hash=r.password_hash,
    )


def _customer(r: Any) -> Customer:
    return Customer(
        id=r.id, name=r.name, star=r.star, risk_level=r.risk_level, tags_risk=tuple(r.tags_risk or ()),
        tags_qualification=tuple(r.tags_qualification or ()), tags_preference=tuple(r.tags_preference or ()),
        tags_value=tuple(r.tags_value or ()), dedicated_advisor=r.dedicated_advisor, team=r.team,
        phone_masked=r.phone_masked,
    )


def _customer_values(c: Customer, now: float) -> dict[str, Any]:
    return {
        "name": c.name, "star": c.star, "risk_level": c.risk_level, "tags_risk": list(c.tags_risk),
        "tags_qualification": list(c.tags_qualification), "tags_preference": list(c.tags_preference),
        "tags_value": list(c.tags_value), "dedicated_advisor": c.dedicated_advisor, "team": c.team,
        "phone_masked": c.phone_masked, "updated_at": now,
    }


_CONVERSATION_FIELDS = frozenset(f.name for f in fields(Conversation))


def _conversation(r: Any) -> Conversation:
    return Conversation(
        id=r.id, investor_id=r.investor_id, channel=r.channel, state=r.state, customer_id=r.customer_id,
        group_name=r.group_name, advisor_id=r.advisor_id, intent=r.intent, bot_state=r.bot_state,
        last_seq=r.last_seq, legal_hold=bool(r.legal_hold), created_at=r.created_at,
        updated_at=r.updated_at, closed_at=r.closed_at,
    )
