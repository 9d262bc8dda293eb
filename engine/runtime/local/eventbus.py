"""The local runtime's event bus: an append-only log of CloudEvents in ``$SLUICE_HOME/events.db`` (SQLite).

``sluice server`` hosts the event sources (webhook, calendar, S3), which :meth:`LocalEventBus.publish`,
and the sensors, which read through durable consumers (:meth:`~LocalEventBus.fetch`,
:meth:`~LocalEventBus.ack`); ``sluice events tail`` reads the log from another process with
:class:`EventLogReader`. :class:`LocalEventBus` implements :class:`engine.runtime.base.EventBus`; the
record types are in :mod:`engine.runtime.busmodel`.

Durability. The bus has its own database, apart from the workflow state (``state.db``), so its writes
never queue behind workflow writes. It runs in WAL mode with ``synchronous=NORMAL``: a committed
transaction is in the WAL file (the OS's page cache) when the commit returns, so a process that is
killed, SIGKILL included, loses nothing the bus acknowledged; only a power cut or a kernel crash can
drop the newest transactions.

Writes and group commit. Every write (publish, consumer create/delete, the bookkeeping of a fetch, ack,
nak, key-value puts, compaction) is an operation queued for the bus's writer task, which runs
everything queued since its last round in one transaction, so concurrent publishers share commits.
Each caller's await returns only after the transaction holding its operation committed, and raises
:class:`StoreError` when the commit failed (a webhook can answer 5xx). Each operation runs inside a
savepoint, so one that fails (an unknown consumer) does not undo the others.

The writer runs its transactions on the event loop's thread. A transaction here is tens of
microseconds of SQLite work: WAL with ``synchronous=NORMAL`` syncs nothing at commit, and checkpoints
run on a thread of their own (:mod:`~engine.runtime.local.walcheckpoint`). Handing each batch to a
thread and back cost more CPU than that, and a writer thread held SQLite's write lock while it waited
for the GIL between statements, so the other process (the intake process, or the owner) waited too.
Waiting for the other process's write lock is the one wait, and the loop runs other work during it
(see :meth:`_GroupWriter._begin`). Reads (``read``, ``kv_get``, ``kv_list``, ``last_seq``) use a second,
read-only connection in a thread, and see committed data only. A bus serves one event loop at a time.

One process owns a bus database at a time: opening it takes an exclusive lock on ``events.db.lock``,
which the OS releases when that process ends however it ends. Other processes read, and the owner's
intake process appends events through a :class:`BusPublisher`: its own writer connection and group
commit, taking turns with the owner on SQLite's write lock. Sequence numbers stay in commit order
because only one transaction writes at a time.

The log. Sequence numbers are assigned in commit order and never reused (AUTOINCREMENT), even after
retention removed the newest events. An event whose ``id`` is already on the bus for the same namespace
and ``source`` is not stored again: ``publish`` returns the sequence number it already has. Sources that
derive ids from what they saw (a calendar's fire time, an S3 object's version) thus put each occurrence
on the bus once, however often they retry. The duplicate check holds while the first copy is retained.

Consumers behave like JetStream durable pull consumers with explicit acks, the kind Argo Events creates
per sensor trigger. A consumer has filters (:class:`SubjectFilter`), a cursor ``delivered_seq`` and a
table of pending deliveries. A consumer created for the first time starts after the last event on the
bus (DeliverNew) unless ``deliver_all`` is set; calling ``consumer`` again with the same name updates its
filters and ``ack_wait`` and keeps its position. ``fetch`` hands out due redeliveries first, then new
matching events, in sequence order, and records each delivery (with its count) in the same database; it
long-polls by waiting for the writer to commit a matching event, never by sleeping in a loop. A delivery
not acknowledged within ``ack_wait`` seconds is handed out again with ``deliveries`` one higher; after a
restart of the bus every pending delivery is due at once (whoever held it is gone). ``ack`` removes the
pending delivery and applies its ``kv_updates`` in the same transaction; acking something that is not
pending (acked already, or never delivered to this consumer) changes nothing and returns False.
``ack_batch`` does the same for a sensor's whole fetched batch in one transaction.

Retention follows JetStream's limits policy, as in the stream Argo Events creates: :meth:`compact`
removes, oldest first, every event older than ``max_age`` or beyond the newest ``max_msgs``, whether or
not consumers acknowledged it, so a consumer that is stuck or was abandoned cannot fill the disk. Age
is judged in log order: an event goes once it and every event before it are too old. A consumer whose
pending or not yet delivered events were removed never sees them. The server schedules ``compact``.

The key-value table holds sensors' partial condition state, one bucket per sensor. Because the
``kv_updates`` of an ack commit with the ack, a sensor's "consume the event and update its partial
state" either happens entirely or not at all: after a crash it is redelivered against the old state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Problem, ReferenceError_, SpecError, StateError, StoreError
from engine.runtime.busmodel import (
    JSON_ENCODER,
    BusRecord,
    ConsumerInfo,
    Delivery,
    KVUpdate,
    SubjectFilter,
    check_consumer,
    encode_event,
)
from engine.runtime.local.walcheckpoint import Checkpointer, no_autocheckpoint

if TYPE_CHECKING:
    from engine.runtime.base import EventBus

SCHEMA_VERSION = 1

# Statements contain no semicolon of their own: they are run one by one inside the opening transaction.
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    source TEXT NOT NULL,
    subject TEXT NOT NULL,
    event_id TEXT NOT NULL,
    published_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events (namespace, source, event_id);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY,
    filters TEXT NOT NULL,
    ack_wait REAL NOT NULL,
    delivered_seq INTEGER NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
-- due is a time on the bus process's monotonic clock (opening the bus sets every due to 0).
CREATE TABLE IF NOT EXISTS pending (
    consumer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    due REAL NOT NULL,
    PRIMARY KEY (consumer, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID
"""

DEFAULT_MAX_AGE = 72 * 3600.0  # JetStream's stream defaults in Argo Events
DEFAULT_MAX_MSGS = 1_000_000
DEFAULT_MAX_EVENT_BYTES = 1 << 20  # NATS' default max_payload
BUSY_TIMEOUT = 30.0  # seconds a writer waits for the write lock before the operation fails
BUSY_POLL = 0.0002  # seconds between tries for it (see _GroupWriter._begin)
BUSY_SPIN = 0.001  # of which the first this long are spent in place, without yielding the loop
MAX_BATCH = 2000  # operations per transaction: bounds how long one commit keeps later callers waiting
COMPACT_CHUNK = 5000  # events removed per transaction, so publishes interleave with a large compaction

_JSON = JSON_ENCODER


def events_path(home: Path) -> Path:
    """Where the bus of a ``$SLUICE_HOME`` lives."""
    return home / "events.db"


# ================================================================================================ helpers


# Reading the log in order from a position. A subject filter names namespace and source, which the
# dedupe index starts with: left to itself SQLite searches that index and sorts every event of the
# source to take the first few, work that grows with the log (2.8 ms a fetch at 20,000 events).
# Walking the rowid from the position takes only the rows it returns.
_EVENTS_IN_ORDER = "events NOT INDEXED"


def _filter_sql(filters: Iterable[SubjectFilter]) -> tuple[str, list[Any]]:
    """A WHERE fragment over the events table matching any of ``filters`` (all events when empty)."""
    clauses: list[str] = []
    args: list[Any] = []
    for f in filters:
        parts = []
        for column, value in (
            ("namespace", f.namespace),
            ("source", f.event_source),
            ("subject", f.event_name),
        ):
            if value is not None:
                parts.append(f"{column} = ?")
                args.append(value)
        if not parts:
            return "1", []
        clauses.append("(" + " AND ".join(parts) + ")")
    return ("(" + " OR ".join(clauses) + ")" if clauses else "1"), args


def _filters_to_json(filters: Sequence[SubjectFilter]) -> str:
    return json.dumps([[f.namespace, f.event_source, f.event_name] for f in filters])


def _filters_from_json(text: str) -> tuple[SubjectFilter, ...]:
    return tuple(SubjectFilter(*parts) for parts in json.loads(text))


def _encode_event(namespace: str, event: Mapping[str, Any], max_bytes: int) -> tuple[str, str, str, str]:
    """:func:`encode_event`, and no more than ``max_bytes`` of JSON."""
    source, subject, event_id, text = encode_event(namespace, event)
    # A character is at most 4 bytes in UTF-8: only long texts need encoding to be measured.
    if len(text) > max_bytes // 4 and (size := len(text.encode())) > max_bytes:
        raise SpecError([Problem("event", f"is {size} bytes, more than the bus takes ({max_bytes})")])
    return source, subject, event_id, text


def _take_lock(path: Path) -> int:
    """Hold ``<db>.lock`` exclusively for this process's lifetime; fail if another bus holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"event bus {path} is already open in process {holder}") from None
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot lock {lock_path}: {exc}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


# ================================================================================================ reading


class EventLogReader:
    """Read-only access to a bus database: the log, the key-value table and the consumers' positions.

    Blocking; safe next to a running bus in another process (WAL readers never block its writer).
    The bus uses one of these in its reader thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise StoreError(f"no event bus at {path}")
        try:
            self._db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            self._db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open event bus {path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EventLogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"event bus {self.path}: {exc}") from exc

    def read(
        self, from_seq: int = 1, limit: int = 100, filters: Sequence[SubjectFilter] | None = None
    ) -> list[BusRecord]:
        """Events with ``seq >= from_seq`` matching any of ``filters`` (all when None), in order."""
        clause, args = _filter_sql(filters or ())
        rows = self._rows(
            f"SELECT seq, namespace, event, published_at FROM {_EVENTS_IN_ORDER} WHERE seq >= ? AND {clause}"
            " ORDER BY seq LIMIT ?",
            [from_seq, *args, limit],
        )
        return [BusRecord(seq=r[0], namespace=r[1], event=json.loads(r[2]), published_at=r[3]) for r in rows]

    def last_seq(self) -> int:
        rows = self._rows("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(rows[0][0]) if rows else 0

    def kv_get(self, bucket: str, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT value FROM kv WHERE bucket = ? AND key = ?", (bucket, key))
        return json.loads(rows[0][0]) if rows else None

    def kv_list(self, bucket: str) -> dict[str, dict[str, Any]]:
        rows = self._rows("SELECT key, value FROM kv WHERE bucket = ? ORDER BY key", (bucket,))
        return {k: json.loads(v) for k, v in rows}

    def consumers(self) -> list[ConsumerInfo]:
        rows = self._rows(
            "SELECT c.name, c.filters, c.ack_wait, c.delivered_seq,"
            " (SELECT count(*) FROM pending p WHERE p.consumer = c.name) FROM consumers c ORDER BY c.name"
        )
        return [
            ConsumerInfo(
                name=r[0],
                filters=_filters_from_json(r[1]),
                ack_wait=r[2],
                delivered_seq=r[3],
                ack_pending=r[4],
                created=False,
            )
            for r in rows
        ]

    def retention_bound(self, *, max_age: float | None, max_msgs: int | None, now: float) -> int:
        """The highest seq that retention removes (with everything before it); 0 when nothing goes."""
        bound = 0
        if max_msgs is not None:
            rows = self._rows("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_msgs,))
            if rows:
                bound = rows[0][0]
        if max_age is not None:
            # Scans from the oldest event to the first young one: what it walks over is what goes.
            rows = self._rows(
                "SELECT seq FROM events WHERE published_at >= ? ORDER BY seq LIMIT 1", (now - max_age,)
            )
            if rows:
                bound = max(bound, rows[0][0] - 1)
            else:
                last = self._rows("SELECT max(seq) FROM events")[0][0]
                bound = max(bound, last or 0)
        return int(bound)


# ================================================================================================ the bus


@dataclass
class _BatchEffects:
    """What a committed batch changed that waiting fetches care about."""

    subjects: set[tuple[str, str, str]] = field(default_factory=set)
    consumers: set[str] = field(default_factory=set)


_Op = Callable[[], Any]  # an operation the writer runs inside the batch transaction


class _GroupWriter:
    """A writer connection to a bus database, and the task that commits queued operations.

    Operations are queued by :meth:`_submit` and run by one writer task on the event loop, everything
    queued in one transaction, each operation in its own savepoint (see the module docstring).
    :class:`LocalEventBus` and :class:`BusPublisher` are the two kinds of writer; :meth:`_committed` is
    what a writer does with what a batch changed.
    """

    def __init__(
        self, path: Path, db: sqlite3.Connection, *, max_event_bytes: int, now: Callable[[], float]
    ) -> None:
        self.path = path
        self.max_event_bytes = max_event_bytes
        self._now = now
        self._db = db
        self._queue: list[tuple[_Op, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # What the batch being committed changed, handed to _committed once it is done.
        self._effects = _BatchEffects()
        self._batch_time = 0.0

    def _in_use(self) -> bool:
        return self._flusher is not None or bool(self._queue)

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting out another process's write transaction.

        The intake process and the owner take turns on the write lock, each transaction lasting well
        under a millisecond. SQLite's own busy handler sleeps 1, 2, 5, 10 ms and more between tries,
        with the loop blocked. Here the first ``BUSY_SPIN`` seconds of tries, every ``BUSY_POLL``,
        happen in place (the lock is usually free again by then, and a loop timer cannot wake sooner
        than a millisecond); after that the loop runs other work between tries.
        """
        start = time.monotonic()
        while True:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - start
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or waited > BUSY_TIMEOUT:
                    raise
            if waited < BUSY_SPIN:
                time.sleep(BUSY_POLL)
            else:
                await asyncio.sleep(BUSY_POLL)

    def _committed(self, effects: _BatchEffects) -> None:
        """On the loop, after a batch committed and its callers got their results."""

    async def _close_writer(self) -> None:
        """Commit what is queued, then close the connection."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        self._db.close()

    # --- the writer -----------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise StoreError(f"event bus {self.path} is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Futures and the flusher task belong to one loop; an idle bus may move to another.
            if self._in_use():
                raise StateError("the event bus is in use by another event loop")
            self._loop = loop
        return loop

    def _submit(self, op: _Op) -> asyncio.Future[Any]:
        loop = self._bind()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        """Commit queued operations, one transaction per round, until the queue is empty."""
        batch: list[tuple[_Op, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                try:
                    results, effects = await self._run_batch(batch)
                except Exception as exc:
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(self._store_error(exc))
                    continue
                for (_, f), (ok, value) in zip(batch, results, strict=True):
                    if f.done():
                        continue
                    if ok:
                        f.set_result(value)
                    else:
                        f.set_exception(value)
                batch = []
                self._committed(effects)
        except asyncio.CancelledError:
            # The loop is going away under us: whatever was in flight may or may not have committed.
            for _, f in [*batch, *self._queue]:
                if not f.done():
                    f.set_exception(
                        StoreError("event bus writer stopped; the operation may not be committed")
                    )
            self._queue.clear()
            raise
        finally:
            self._flusher = None

    def _store_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, StoreError):
            return exc
        err = StoreError(f"event bus {self.path}: write failed: {exc}")
        err.__cause__ = exc
        return err

    async def _run_batch(
        self, batch: list[tuple[_Op, asyncio.Future[Any]]]
    ) -> tuple[list[tuple[bool, Any]], _BatchEffects]:
        """Run the batch's operations in one transaction, each in its own savepoint."""
        db = self._db
        self._effects = _BatchEffects()
        results: list[tuple[bool, Any]] = []
        await self._begin()
        try:
            self._batch_time = self._now()
            for op, fut in batch:
                if fut.done():
                    # A caller that gave up before its turn (cancelled fetch) must not claim deliveries.
                    results.append((False, None))
                    continue
                db.execute("SAVEPOINT op")
                try:
                    value = op()
                except Exception as exc:
                    if not db.in_transaction:
                        # SQLite rolled the whole transaction back (disk full, I/O error): every
                        # operation of the batch is lost, not only this one.
                        raise
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    if isinstance(exc, sqlite3.Error):
                        err = StoreError(f"event bus {self.path}: {exc}")
                        err.__cause__ = exc
                        results.append((False, err))
                    else:
                        results.append((False, exc))
                else:
                    db.execute("RELEASE op")
                    results.append((True, value))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return results, self._effects

    def _op_publish(self, namespace: str, source: str, subject: str, event_id: str, text: str) -> int:
        db = self._db
        cur = db.execute(
            "INSERT INTO events (namespace, source, subject, event_id, published_at, event)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, source, event_id) DO NOTHING",
            (namespace, source, subject, event_id, self._batch_time, text),
        )
        if cur.rowcount == 1:
            self._effects.subjects.add((namespace, source, subject))
            return int(cur.lastrowid or 0)
        row = db.execute(
            "SELECT seq FROM events WHERE namespace = ? AND source = ? AND event_id = ?",
            (namespace, source, event_id),
        ).fetchone()
        return int(row[0])

    async def publish(self, namespace: str, event: Mapping[str, Any]) -> int:
        """Commit ``event`` and return its sequence number; a duplicate (namespace, source, id) is not
        stored again and gets the first copy's number. Raises SpecError for an event the bus cannot
        take and StoreError when the commit failed."""
        source, subject, event_id, text = _encode_event(namespace, event, self.max_event_bytes)
        seq: int = await self._submit(partial(self._op_publish, namespace, source, subject, event_id, text))
        return seq


class LocalEventBus(_GroupWriter):
    """The embedded :class:`engine.runtime.base.EventBus` over one SQLite file (see the module docstring).

    ``now`` (seconds since the epoch) stamps events and judges their age; ``monotonic`` times
    ``ack_wait``. Both are injectable so tests can move time.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_age: float | None = DEFAULT_MAX_AGE,
        max_msgs: int | None = DEFAULT_MAX_MSGS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.max_msgs = max_msgs
        self._monotonic = monotonic
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {path.parent}: {exc}") from exc
        self._lock_fd = _take_lock(path)
        try:
            db = self._open_writer(path)
            super().__init__(path, db, max_event_bytes=max_event_bytes, now=now)
            self._filters = self._load_consumers()
            self._reader = EventLogReader(path)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._checkpointer = Checkpointer(path).start()
        self._reader_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-bus-reader")
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def _in_use(self) -> bool:
        return super()._in_use() or bool(self._waiters)

    def _committed(self, effects: _BatchEffects) -> None:
        self._wake(effects)

    def published_elsewhere(self, subjects: Iterable[tuple[str, str, str]]) -> None:
        """Events of these (namespace, source, subject)s were committed by a :class:`BusPublisher`:
        the fetches waiting for them look again."""
        self._wake(_BatchEffects(subjects=set(subjects)))

    @staticmethod
    def _open_writer(path: Path) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process being killed; only power loss may drop it.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("BEGIN IMMEDIATE")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"event bus {path} was written by a newer Sluicegate (schema {version})")
            for statement in SCHEMA.split(";"):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # Whoever held the pending deliveries went with the previous process: hand them out again.
            db.execute("UPDATE pending SET due = 0")
            db.execute("COMMIT")
            db.execute("PRAGMA busy_timeout=0")  # from now on _begin waits for the write lock
            no_autocheckpoint(db)
            return db
        except sqlite3.Error as exc:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                db.close()
            raise StoreError(f"cannot open event bus {path}: {exc}") from exc
        except BaseException:
            if db is not None:
                db.close()
            raise

    def _load_consumers(self) -> dict[str, tuple[SubjectFilter, ...]]:
        rows = self._db.execute("SELECT name, filters FROM consumers").fetchall()
        return {name: _filters_from_json(text) for name, text in rows}

    def _wake(self, effects: _BatchEffects) -> None:
        if not self._waiters or not (effects.subjects or effects.consumers):
            return
        for name, futures in self._waiters.items():
            if name not in effects.consumers:
                filters = self._filters.get(name, ())
                if not any(f.matches(*s) for s in effects.subjects for f in filters):
                    continue
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)

    # --- operations run by the writer ------------------------------------------------------------------

    def _last_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def _op_consumer(
        self, name: str, filters: tuple[SubjectFilter, ...], ack_wait: float, deliver_all: bool
    ) -> ConsumerInfo:
        db = self._db
        row = db.execute("SELECT delivered_seq FROM consumers WHERE name = ?", (name,)).fetchone()
        if row is None:
            delivered = 0 if deliver_all else self._last_seq()
            db.execute(
                "INSERT INTO consumers (name, filters, ack_wait, delivered_seq, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, _filters_to_json(filters), ack_wait, delivered, self._batch_time),
            )
        else:
            delivered = row[0]
            db.execute(
                "UPDATE consumers SET filters = ?, ack_wait = ? WHERE name = ?",
                (_filters_to_json(filters), ack_wait, name),
            )
        pending = db.execute("SELECT count(*) FROM pending WHERE consumer = ?", (name,)).fetchone()[0]
        # Set here, before the commit is reported, so a wake-up right after it uses the new filters.
        self._filters[name] = filters
        self._effects.consumers.add(name)
        return ConsumerInfo(
            name=name,
            filters=filters,
            ack_wait=ack_wait,
            delivered_seq=delivered,
            ack_pending=pending,
            created=row is None,
        )

    def _op_delete_consumer(self, name: str) -> bool:
        cur = self._db.execute("DELETE FROM consumers WHERE name = ?", (name,))
        self._db.execute("DELETE FROM pending WHERE consumer = ?", (name,))
        self._filters.pop(name, None)
        self._effects.consumers.add(name)
        return cur.rowcount > 0

    def _op_claim(self, consumer: str, limit: int) -> tuple[list[Delivery], float | None]:
        """Hand out up to ``limit`` due events; also return when the next pending one falls due."""
        db = self._db
        row = db.execute(
            "SELECT filters, ack_wait, delivered_seq FROM consumers WHERE name = ?", (consumer,)
        ).fetchone()
        if row is None:
            raise ReferenceError_(f"no event bus consumer named {consumer!r}")
        filters, ack_wait, delivered = _filters_from_json(row[0]), row[1], row[2]
        now = self._monotonic()
        due = now + ack_wait
        out: list[Delivery] = []
        redeliver = db.execute(
            "SELECT p.seq, p.deliveries, e.namespace, e.event, e.published_at FROM pending p"
            " LEFT JOIN events e ON e.seq = p.seq WHERE p.consumer = ? AND p.due <= ? ORDER BY p.seq LIMIT ?",
            (consumer, now, limit),
        ).fetchall()
        for seq, count, namespace, text, published_at in redeliver:
            if text is None:  # removed by retention since it was delivered
                db.execute("DELETE FROM pending WHERE consumer = ? AND seq = ?", (consumer, seq))
                continue
            db.execute(
                "UPDATE pending SET deliveries = ?, due = ? WHERE consumer = ? AND seq = ?",
                (count + 1, due, consumer, seq),
            )
            out.append(Delivery(seq, namespace, json.loads(text), published_at, count + 1))
        room = limit - len(out)
        if room > 0:
            clause, args = _filter_sql(filters)
            fresh = db.execute(
                f"SELECT seq, namespace, event, published_at FROM {_EVENTS_IN_ORDER}"
                f" WHERE seq > ? AND {clause} ORDER BY seq LIMIT ?",
                (delivered, *args, room),
            ).fetchall()
            db.executemany(
                "INSERT OR REPLACE INTO pending (consumer, seq, deliveries, due) VALUES (?, ?, 1, ?)",
                [(consumer, r[0], due) for r in fresh],
            )
            out.extend(Delivery(r[0], r[1], json.loads(r[2]), r[3], 1) for r in fresh)
            # Having reached the end of the log, skip past what did not match so it is not scanned again.
            cursor = fresh[-1][0] if len(fresh) == room else max(delivered, self._last_seq())
            if cursor != delivered:
                db.execute("UPDATE consumers SET delivered_seq = ? WHERE name = ?", (cursor, consumer))
        next_due = db.execute(
            "SELECT min(due) FROM pending WHERE consumer = ? AND due > ?", (consumer, now)
        ).fetchone()[0]
        return out, next_due

    def _op_ack(
        self, consumer: str, seqs: Sequence[int], updates: list[tuple[str, str, str | None]]
    ) -> list[int]:
        db = self._db
        acked = [
            seq
            for seq in seqs
            if db.execute("DELETE FROM pending WHERE consumer = ? AND seq = ?", (consumer, seq)).rowcount
        ]
        if acked:
            for bucket, key, text in updates:
                self._kv_write(bucket, key, text)
        return acked

    def _op_nak(self, consumer: str, seq: int, delay: float) -> bool:
        cur = self._db.execute(
            "UPDATE pending SET due = ? WHERE consumer = ? AND seq = ?",
            (self._monotonic() + delay, consumer, seq),
        )
        self._effects.consumers.add(consumer)
        return cur.rowcount > 0

    def _kv_write(self, bucket: str, key: str, text: str | None) -> bool:
        if text is None:
            cur = self._db.execute("DELETE FROM kv WHERE bucket = ? AND key = ?", (bucket, key))
        else:
            cur = self._db.execute(
                "INSERT OR REPLACE INTO kv (bucket, key, value, updated_at) VALUES (?, ?, ?, ?)",
                (bucket, key, text, self._batch_time),
            )
        return cur.rowcount > 0

    def _op_compact(self, bound: int) -> tuple[int, bool]:
        """Remove up to COMPACT_CHUNK seqs' worth of events at or below ``bound``; (removed, finished)."""
        db = self._db
        lowest = db.execute("SELECT min(seq) FROM events").fetchone()[0]
        if lowest is None or lowest > bound:
            return 0, True
        upto = min(bound, lowest + COMPACT_CHUNK - 1)
        removed = db.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
        db.execute("DELETE FROM pending WHERE seq <= ?", (upto,))
        return removed, upto >= bound

    # --- the port -------------------------------------------------------------------------------------

    async def consumer(
        self,
        name: str,
        filters: Sequence[SubjectFilter],
        *,
        deliver_all: bool = False,
        ack_wait: float = 30.0,
    ) -> ConsumerInfo:
        check_consumer(name, filters, ack_wait)
        op = partial(self._op_consumer, name, tuple(filters), float(ack_wait), deliver_all)
        info: ConsumerInfo = await self._submit(op)
        return info

    async def delete_consumer(self, name: str) -> bool:
        deleted: bool = await self._submit(partial(self._op_delete_consumer, name))
        return deleted

    async def fetch(self, consumer: str, *, limit: int = 1, timeout: float = 0.0) -> list[Delivery]:
        """Up to ``limit`` events in sequence order (redeliveries and new ones), as soon as there is one;
        an empty list once ``timeout`` seconds passed without any. Raises ReferenceError_ for an
        unknown consumer."""
        if limit < 1:
            raise SpecError([Problem("fetch.limit", f"must be at least 1, not {limit}")])
        loop = self._bind()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            # Registered before claiming, so a commit between the claim and the wait still wakes us.
            waiter: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters.setdefault(consumer, set())
            waiters.add(waiter)
            try:
                out, next_due = await self._submit(partial(self._op_claim, consumer, limit))
                if out:
                    return list(out)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                if next_due is not None:
                    remaining = min(remaining, max(0.0, next_due - self._monotonic()) + 0.001)
                await asyncio.wait([waiter], timeout=remaining)
            finally:
                waiters.discard(waiter)
                if not waiters and self._waiters.get(consumer) is waiters:
                    del self._waiters[consumer]
                if not waiter.done():
                    waiter.cancel()

    async def ack(self, consumer: str, seq: int, *, kv_updates: Sequence[KVUpdate] = ()) -> bool:
        """Acknowledge a pending delivery and apply ``kv_updates`` in the same transaction. Returns False,
        applying nothing, when ``seq`` is not pending for ``consumer`` (acked already, or never
        delivered to it): the caller's processing was a duplicate and its state changes are stale."""
        return bool(await self.ack_batch(consumer, [seq], kv_updates=kv_updates))

    async def ack_batch(
        self, consumer: str, seqs: Sequence[int], *, kv_updates: Sequence[KVUpdate] = ()
    ) -> list[int]:
        """Acknowledge several deliveries and apply ``kv_updates`` in one transaction; return the seqs
        that were pending. The updates are applied when at least one was: they are the state after the
        whole batch, and dropping them would lose what the newly acknowledged events changed."""
        updates = [
            (u.bucket, u.key, None if u.value is None else _encode_kv(u.bucket, u.key, u.value))
            for u in kv_updates
        ]
        acked: list[int] = await self._submit(partial(self._op_ack, consumer, list(seqs), updates))
        return acked

    async def nak(self, consumer: str, seq: int, *, delay: float = 0.0) -> bool:
        naked: bool = await self._submit(partial(self._op_nak, consumer, seq, max(0.0, delay)))
        return naked

    async def _read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreError(f"event bus {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, partial(fn, *args, **kwargs))

    async def read(
        self, from_seq: int = 1, limit: int = 100, filters: Sequence[SubjectFilter] | None = None
    ) -> list[BusRecord]:
        records: list[BusRecord] = await self._read(self._reader.read, from_seq, limit, filters)
        return records

    async def last_seq(self) -> int:
        seq: int = await self._read(self._reader.last_seq)
        return seq

    async def kv_get(self, bucket: str, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = await self._read(self._reader.kv_get, bucket, key)
        return value

    async def kv_list(self, bucket: str) -> dict[str, dict[str, Any]]:
        values: dict[str, dict[str, Any]] = await self._read(self._reader.kv_list, bucket)
        return values

    async def kv_put(self, bucket: str, key: str, value: Mapping[str, Any]) -> None:
        await self._submit(partial(self._kv_write, bucket, key, _encode_kv(bucket, key, value)))

    async def kv_delete(self, bucket: str, key: str) -> bool:
        deleted: bool = await self._submit(partial(self._kv_write, bucket, key, None))
        return deleted

    async def compact(self) -> int:
        """Remove the events past ``max_age``/``max_msgs`` (limits policy, see the module docstring)."""
        if self.max_age is None and self.max_msgs is None:
            return 0
        bound: int = await self._read(
            self._reader.retention_bound, max_age=self.max_age, max_msgs=self.max_msgs, now=self._now()
        )
        removed = 0
        finished = bound == 0
        while not finished:
            n, finished = await self._submit(partial(self._op_compact, bound))
            removed += n
        return removed

    async def close(self) -> None:
        """Commit every operation already submitted, then close the database and release the lock."""
        if self._closed:
            return
        self._closed = True
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._checkpointer.stop)
            await self._close_writer()
            await loop.run_in_executor(self._reader_pool, self._reader.close)
        finally:
            self._reader_pool.shutdown(wait=True)
            os.close(self._lock_fd)


class BusPublisher(_GroupWriter):
    """Publishes to the bus that another process owns: the intake process's side of the bus.

    Only appends events, with the owner's duplicate check (the unique index) and its group commit;
    consumers, acknowledgements and retention stay with the owning :class:`LocalEventBus`. The two
    processes' transactions take turns on SQLite's write lock, and the sequence numbers stay in
    commit order. The owner does not see these commits happen: whoever runs the publisher reports
    them (:meth:`LocalEventBus.published_elsewhere`) so that waiting fetches look again.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not path.exists():
            raise StoreError(f"no event bus at {path}")
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("PRAGMA busy_timeout=0")  # _begin waits for the write lock
            no_autocheckpoint(db)  # the owner's checkpointer copies this WAL back too
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open event bus {path}: {exc}") from exc
        if version != SCHEMA_VERSION:
            db.close()
            raise StoreError(f"event bus {path} has schema {version}, this publisher writes {SCHEMA_VERSION}")
        super().__init__(path, db, max_event_bytes=max_event_bytes, now=now)

    async def close(self) -> None:
        """Commit every event already submitted, then close the database."""
        if not self._closed:
            self._closed = True
            await self._close_writer()


def _encode_kv(bucket: str, key: str, value: Mapping[str, Any]) -> str:
    try:
        return _JSON.encode(dict(value))
    except (TypeError, ValueError) as exc:
        raise SpecError([Problem(f"kv.{bucket}.{key}", f"is not JSON-serializable: {exc}")]) from exc


if TYPE_CHECKING:
    _fits_the_port: type[EventBus] = LocalEventBus  # mypy checks the bus against the Protocol
