"""The local runtime's state: one SQLite database (WAL) under ``$SLUICE_HOME``.

Tables: workflows (phase, message, status without nodes, control flags, owning process), manifests
(each workflow's manifest and stored templates, written once), nodes (one row per node, JSON — only
changed nodes are written after each reconcile), stored objects (WorkflowTemplate,
ClusterWorkflowTemplate, CronWorkflow, ConfigMap, Secret), the memoization cache and cron state.
Every reconcile's changes are written in one transaction, so a ``kill -9`` loses nothing that was
acknowledged; :meth:`Store.batch` lets a sensor's batch of submissions share one commit. Used by the
local engine, the server and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import StateError, StoreError
from engine.runtime.local.walcheckpoint import Checkpointer, no_autocheckpoint
from engine.workflows.nodes import Node
from engine.workflows.status import WorkflowStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    uid TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT '',
    message TEXT,
    status TEXT NOT NULL DEFAULT '{}',
    control TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    finished_at REAL,
    owner TEXT,
    UNIQUE (namespace, name)
);
CREATE INDEX IF NOT EXISTS workflows_phase ON workflows (phase);
-- Written once per workflow, apart from the row updated after every reconcile: SQLite rewrites a
-- whole record on update, and a big manifest would make every step's write as large as the workflow.
CREATE TABLE IF NOT EXISTS manifests (
    uid TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    stored TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    wf_uid TEXT NOT NULL,
    node_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (wf_uid, node_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memo (
    cache TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (cache, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cron_state (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
"""

CLUSTER = ""  # namespace value of cluster-scoped objects


def default_home() -> Path:
    return Path(os.environ.get("SLUICE_HOME") or Path.home() / ".sluice")


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    uid: str
    namespace: str
    name: str
    manifest: dict[str, Any]
    phase: str
    message: str | None
    status: dict[str, Any]
    control: dict[str, Any]
    created_at: float
    finished_at: float | None
    owner: str | None


@dataclass
class _Batch:
    """An open Store.batch: who opened it, whether its transaction has begun, and what undoes the
    in-memory side of its uncommitted writes."""

    owner: object
    begun: bool = False
    failed: StoreError | None = None
    on_rollback: list[Callable[[], None]] = field(default_factory=list)


def _caller() -> object:
    """The asyncio task running this code, or the thread when there is none."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.get_ident()


def _node_rows(uid: str, status: WorkflowStatus, ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """Rows of the nodes table for the nodes ``ids`` of ``status`` (ids it no longer has are skipped)."""
    rows = []
    for nid in ids:
        node = status.nodes.get(nid)
        if node is not None:
            rows.append((uid, nid, json.dumps(node.to_dict(), separators=(",", ":"))))
    return rows


class Store:
    """Thread-safe access to the state database (one connection, serialized)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or default_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create SLUICE_HOME {self.home}: {exc}") from exc
        self.path = self.home / "state.db"
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process kill (the OS keeps the writes); only power loss may
            # drop the last transactions.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._migrate()
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state database {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._batch: _Batch | None = None
        # Bumped by every object write through this connection; see objects_stamp().
        self._objects_writes = 0
        self._checkpointer: Checkpointer | None = None

    def run_checkpoints(self) -> None:
        """Checkpoint the WAL in a thread of its own from now on, not inside this connection's commits
        (for a long-running engine; see :mod:`engine.runtime.local.walcheckpoint`)."""
        with self._lock:
            if self._checkpointer is None:
                no_autocheckpoint(self._db)
                self._checkpointer = Checkpointer(self.path).start()

    def _migrate(self) -> None:
        """Move manifests out of the workflows table of a database written before they had their own."""
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(workflows)")]
        if "manifest" not in cols:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS manifests (uid TEXT PRIMARY KEY, manifest TEXT NOT NULL,"
                " stored TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID"
            )
            self._db.execute(
                "INSERT OR IGNORE INTO manifests (uid, manifest) SELECT uid, manifest FROM workflows"
            )
            self._db.execute("ALTER TABLE workflows DROP COLUMN manifest")
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise

    def stop_checkpoints(self) -> None:
        """Stop the thread :meth:`run_checkpoints` started; commits checkpoint again as they need."""
        with self._lock:
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                self._db.execute("PRAGMA wal_autocheckpoint=1000")
        if checkpointer is not None:
            checkpointer.stop()

    def close(self) -> None:
        self.stop_checkpoints()
        with self._lock:
            self._db.close()

    # --- transactions -----------------------------------------------------------------------------
    #
    # Each write is a transaction of its own, except inside batch(): there the writes of the task that
    # opened it are savepoints of one transaction, committed when the batch ends, or earlier when
    # anyone else writes or calls flush() (a workflow driver does before it acts on what was stored).
    # A commit costs far more than the rows of one workflow, and a sensor submits many at once.

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the calling task's transactions inside into one commit (see above). Raises StoreError
        at the end when that commit, or an earlier one of the batch, failed: the caller must not take
        what it wrote inside for stored. Inside another task's batch, nothing is grouped."""
        if self._batch is not None:
            yield
            return
        self._batch = _Batch(_caller())
        try:
            yield
        finally:
            batch = self._batch
            try:
                self.flush()
            finally:
                self._batch = None
            if batch.failed is not None:
                raise batch.failed

    def flush(self) -> None:
        """Commit what an open batch wrote so far. On failure the batch's uncommitted writes are gone:
        their on_rollback callbacks run and StoreError is raised."""
        with self._lock:
            batch = self._batch
            if batch is None or not batch.begun:
                return
            batch.begun = False
            undo, batch.on_rollback = batch.on_rollback, []
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._safe_rollback()
                batch.failed = batch.failed or StoreError(f"state database error: {exc}")
                for fn in undo:
                    with contextlib.suppress(Exception):
                        fn()
                raise batch.failed from exc

    def on_rollback(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` if the transaction just written is rolled back after all (an open batch's commit
        fails); outside a batch the write is already committed, so ``fn`` is dropped."""
        batch = self._batch
        if batch is not None and batch.begun and batch.owner == _caller():
            batch.on_rollback.append(fn)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            batch = self._batch
            if batch is not None:
                if batch.owner == _caller():
                    yield from self._savepoint(batch)
                    return
                self.flush()
            yield from self._guarded("BEGIN IMMEDIATE", "COMMIT", self._safe_rollback)

    def _savepoint(self, batch: _Batch) -> Iterator[sqlite3.Connection]:
        if not batch.begun:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc
            batch.begun = True
        yield from self._guarded("SAVEPOINT tx", "RELEASE tx", self._safe_rollback_to)

    def _guarded(self, begin: str, end: str, undo: Callable[[], None]) -> Iterator[sqlite3.Connection]:
        """``begin``, the caller's statements, ``end``; on any failure ``undo``, SQLite's as StoreError."""
        try:
            self._db.execute(begin)
            yield self._db
            self._db.execute(end)
        except sqlite3.Error as exc:
            undo()
            raise StoreError(f"state database error: {exc}") from exc
        except BaseException:
            undo()
            raise

    def _safe_rollback_to(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK TO tx")
            self._db.execute("RELEASE tx")

    def _safe_rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, tuple(args)))
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc

    # --- workflows ------------------------------------------------------------------------------------

    def insert_workflow(
        self,
        *,
        uid: str,
        namespace: str,
        name: str,
        manifest: dict[str, Any],
        status: WorkflowStatus,
        owner: str | None,
        now: float,
    ) -> None:
        """Store a new workflow with its status and every node it has (none, or a first reconcile's).

        Raises StateError, and stores nothing, when the name is taken in the namespace.
        """
        meta = status.to_dict(include_nodes=False, include_stored=False)
        nodes = _node_rows(uid, status, status.nodes)
        with self.tx() as db:
            # The UNIQUE (namespace, name) constraint is the name check: no read before the write.
            try:
                db.execute(
                    "INSERT INTO workflows (uid, namespace, name, phase, message, status, control,"
                    " created_at, finished_at, owner) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        uid,
                        namespace,
                        name,
                        status.phase,
                        status.message,
                        json.dumps(meta),
                        "{}",
                        now,
                        status.finished_at,
                        owner,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "workflows.namespace" not in str(exc):
                    raise
                raise StateError(f"workflow {name!r} already exists in namespace {namespace!r}") from None
            db.execute(
                "INSERT OR REPLACE INTO manifests (uid, manifest, stored) VALUES (?,?,?)",
                (uid, json.dumps(manifest), json.dumps(status.stored_templates)),
            )
            if nodes:
                db.executemany("INSERT OR REPLACE INTO nodes (wf_uid, node_id, data) VALUES (?,?,?)", nodes)

    def save_progress(
        self,
        uid: str,
        status: WorkflowStatus,
        changed: Iterable[str],
        *,
        control: dict[str, Any] | None = None,
        release: bool = False,
    ) -> None:
        """Write the changed nodes and the workflow's status in one transaction.

        ``release`` also clears the owner (the workflow is finished), in the same transaction.
        """
        meta = status.to_dict(include_nodes=False, include_stored=False)
        rows = _node_rows(uid, status, changed)
        sets = "phase=?, message=?, status=?, finished_at=?"
        args: list[Any] = [status.phase, status.message, json.dumps(meta), status.finished_at]
        if control is not None:
            sets += ", control=?"
            args.append(json.dumps(control))
        if release:
            sets += ", owner=NULL"
        args.append(uid)
        with self.tx() as db:
            if rows:
                db.executemany("INSERT OR REPLACE INTO nodes (wf_uid, node_id, data) VALUES (?,?,?)", rows)
            db.execute(f"UPDATE workflows SET {sets} WHERE uid=?", args)

    def replace_nodes(self, uid: str, status: WorkflowStatus) -> None:
        """Rewrite every node (after retry resets nodes)."""
        with self.tx() as db:
            db.execute("DELETE FROM nodes WHERE wf_uid=?", (uid,))
            db.executemany(
                "INSERT INTO nodes (wf_uid, node_id, data) VALUES (?,?,?)",
                [
                    (uid, nid, json.dumps(n.to_dict(), separators=(",", ":")))
                    for nid, n in status.nodes.items()
                ],
            )
            db.execute(
                "UPDATE workflows SET phase=?, message=?, status=?, finished_at=? WHERE uid=?",
                (
                    status.phase,
                    status.message,
                    json.dumps(status.to_dict(include_nodes=False, include_stored=False)),
                    status.finished_at,
                    uid,
                ),
            )

    def set_control(self, uid: str, control: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute("UPDATE workflows SET control=? WHERE uid=?", (json.dumps(control), uid))

    def set_owner(self, uid: str, owner: str | None) -> None:
        with self.tx() as db:
            db.execute("UPDATE workflows SET owner=? WHERE uid=?", (owner, uid))

    def update_manifest(self, uid: str, manifest: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute("UPDATE manifests SET manifest=? WHERE uid=?", (json.dumps(manifest), uid))

    def _row(self, r: tuple[Any, ...]) -> WorkflowRow:
        return WorkflowRow(
            uid=r[0],
            namespace=r[1],
            name=r[2],
            manifest=json.loads(r[3]),
            phase=r[4],
            message=r[5],
            status={**json.loads(r[6]), "storedTemplates": json.loads(r[11] or "{}")},
            control=json.loads(r[7]),
            created_at=r[8],
            finished_at=r[9],
            owner=r[10],
        )

    _COLS = (
        "w.uid, w.namespace, w.name, m.manifest, w.phase, w.message, w.status, w.control, w.created_at,"
        " w.finished_at, w.owner, m.stored"
    )
    _FROM = "workflows w JOIN manifests m ON m.uid = w.uid"

    def get_workflow(self, namespace: str, name: str) -> WorkflowRow | None:
        rows = self._query(
            f"SELECT {self._COLS} FROM {self._FROM} WHERE w.namespace=? AND w.name=?", (namespace, name)
        )
        return self._row(rows[0]) if rows else None

    def get_workflow_by_uid(self, uid: str) -> WorkflowRow | None:
        rows = self._query(f"SELECT {self._COLS} FROM {self._FROM} WHERE w.uid=?", (uid,))
        return self._row(rows[0]) if rows else None

    def list_workflows(self, namespace: str | None = None, *, unfinished: bool = False) -> list[WorkflowRow]:
        sql = f"SELECT {self._COLS} FROM {self._FROM}"
        where: list[str] = []
        args: list[Any] = []
        if namespace is not None:
            where.append("w.namespace=?")
            args.append(namespace)
        if unfinished:
            where.append("w.phase NOT IN ('Succeeded','Failed','Error')")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY w.created_at"
        return [self._row(r) for r in self._query(sql, args)]

    def load_status(self, row: WorkflowRow) -> WorkflowStatus:
        status = WorkflowStatus.from_dict(row.status)
        for (data,) in self._query("SELECT data FROM nodes WHERE wf_uid=?", (row.uid,)):
            node = Node.from_dict(json.loads(data))
            status.nodes[node.id] = node
        return status

    def delete_workflow(self, uid: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM nodes WHERE wf_uid=?", (uid,))
            db.execute("DELETE FROM workflows WHERE uid=?", (uid,))
            db.execute("DELETE FROM manifests WHERE uid=?", (uid,))

    # --- objects --------------------------------------------------------------------------------------

    def objects_stamp(self) -> tuple[int, int]:
        """Changes whenever a stored object may have changed: a cache of objects keyed by it is current.

        This connection's object writes are counted; a commit by any other connection (another
        process: the CLI applying a ConfigMap) moves SQLite's ``data_version``.
        """
        with self._lock:
            try:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise StoreError(f"state database error: {exc}") from exc
            return int(version), self._objects_writes

    def put_object(self, kind: str, namespace: str, name: str, data: dict[str, Any]) -> None:
        with self.tx() as db:
            self._objects_writes += 1
            db.execute(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, data, updated_at) VALUES (?,?,?,?,?)",
                (kind, namespace, name, json.dumps(data), time.time()),
            )

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT data FROM objects WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)
        )
        return json.loads(rows[0][0]) if rows else None

    def list_objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace is None:
            rows = self._query("SELECT data FROM objects WHERE kind=? ORDER BY namespace, name", (kind,))
        else:
            rows = self._query(
                "SELECT data FROM objects WHERE kind=? AND namespace=? ORDER BY name", (kind, namespace)
            )
        return [json.loads(r[0]) for r in rows]

    def delete_object(self, kind: str, namespace: str, name: str) -> bool:
        with self.tx() as db:
            self._objects_writes += 1
            cur = db.execute(
                "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)
            )
            return cur.rowcount > 0

    # --- memoization ----------------------------------------------------------------------------------

    def memo_put(self, cache: str, key: str, data: dict[str, Any], now: float) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO memo (cache, key, data, created_at) VALUES (?,?,?,?)",
                (cache, key, json.dumps(data), now),
            )

    def memo_all(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cache, key, data, created in self._query("SELECT cache, key, data, created_at FROM memo"):
            from engine.workflows.nodes import rfc3339

            out.setdefault(cache, {})[key] = {
                "outputs": json.loads(data),
                "creationTimestamp": rfc3339(created),
            }
        return out

    # --- cron -----------------------------------------------------------------------------------------

    def cron_state(self, namespace: str, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT data FROM cron_state WHERE namespace=? AND name=?", (namespace, name))
        return json.loads(rows[0][0]) if rows else None

    def put_cron_state(self, namespace: str, name: str, data: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO cron_state (namespace, name, data) VALUES (?,?,?)",
                (namespace, name, json.dumps(data)),
            )
