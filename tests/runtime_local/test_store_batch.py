"""Store.batch: one commit for the writes a task makes inside it, committed early when anyone else writes.

Another connection to the same file stands for another process (``sluice list`` reading state.db): it
sees a batch's rows only once they are committed. A commit is made to fail with a deferred foreign key
that the batch violates, which SQLite checks only at COMMIT.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from engine.errors import StateError, StoreError
from engine.runtime.local.engine import LocalEngine
from engine.runtime.local.store import Store
from engine.spec.workflow import Workflow
from tests.runtime_local.test_submit_path import insert as insert_row


def insert(store: Store, name: str) -> None:
    insert_row(store, f"uid-{name}", name)


def names_seen_elsewhere(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT name FROM workflows ORDER BY name")]
    finally:
        db.close()


def test_a_batchs_writes_are_committed_together_when_it_ends(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.batch():
        insert(store, "a")
        insert(store, "b")
        assert names_seen_elsewhere(store.path) == []
        assert [r.name for r in store.list_workflows()] == ["a", "b"]  # its own connection sees them
    assert names_seen_elsewhere(store.path) == ["a", "b"]


def test_a_failing_write_inside_a_batch_undoes_only_itself(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.batch():
        insert(store, "a")
        with pytest.raises(StateError, match="already exists"):
            insert(store, "a")
        insert(store, "b")
    assert names_seen_elsewhere(store.path) == ["a", "b"]


def test_another_tasks_write_commits_the_open_batch_first(tmp_path: Path) -> None:
    store = Store(tmp_path)

    async def main() -> tuple[list[str], list[str]]:
        other_wrote = asyncio.Event()

        async def other() -> None:
            insert(store, "z")
            other_wrote.set()

        with store.batch():
            insert(store, "a")
            before = names_seen_elsewhere(store.path)
            await asyncio.gather(other(), other_wrote.wait())
            after_other = names_seen_elsewhere(store.path)
            insert(store, "b")
        return before, after_other

    before, after_other = asyncio.run(main())
    assert before == []
    assert after_other == ["a", "z"]
    assert names_seen_elsewhere(store.path) == ["a", "b", "z"]


def deferred_key(store: Store) -> None:
    """A table whose rows' foreign key SQLite checks only at COMMIT (set up outside any transaction:
    the pragma does nothing inside one)."""
    store._db.execute("PRAGMA foreign_keys = ON")
    store._db.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
    store._db.execute(
        "CREATE TABLE IF NOT EXISTS child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )


def break_next_commit(store: Store) -> None:
    """Inside a batch: write a row that makes its commit fail (see deferred_key)."""
    with store.tx() as db:
        db.execute("INSERT INTO child (p) VALUES (42)")


def test_a_batch_whose_commit_fails_raises_and_undoes_what_it_did_in_memory(tmp_path: Path) -> None:
    store = Store(tmp_path)
    deferred_key(store)
    undone: list[str] = []
    with pytest.raises(StoreError, match="FOREIGN KEY"), store.batch():
        insert(store, "a")
        store.on_rollback(lambda: undone.append("a"))
        break_next_commit(store)
    assert undone == ["a"]
    assert names_seen_elsewhere(store.path) == []
    insert(store, "after")  # the store goes on working
    assert names_seen_elsewhere(store.path) == ["after"]


def test_outside_a_batch_a_write_is_committed_at_once_and_never_undone(tmp_path: Path) -> None:
    store = Store(tmp_path)
    undone: list[str] = []
    insert(store, "a")
    store.on_rollback(lambda: undone.append("a"))
    assert names_seen_elsewhere(store.path) == ["a"]
    with store.batch():
        pass
    assert undone == []


def test_a_workflow_submitted_in_a_batch_that_fails_to_commit_is_never_run(tmp_path: Path) -> None:
    spec = {"entrypoint": "main", "templates": [{"name": "main", "suspend": {"duration": "1"}}]}
    wf = Workflow.parse(
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}, "spec": spec}
    )

    async def main() -> tuple[bool, bool]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        deferred_key(eng.store)
        try:
            with pytest.raises(StoreError), eng.store.batch():
                run = await eng.submit(wf)
                break_next_commit(eng.store)
            await asyncio.sleep(0.05)
            return run.uid in eng.runs, run.done.is_set()
        finally:
            await eng.close()

    in_runs, done = asyncio.run(main())
    assert not in_runs and done
    assert names_seen_elsewhere(tmp_path / "state.db") == []
