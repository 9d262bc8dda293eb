"""WAL checkpoints of a SQLite database in a thread of their own, for the long-running local writers.

In WAL mode SQLite copies committed pages back into the database file ("checkpoint") from inside
whichever commit takes the WAL past 1,000 pages, and with ``synchronous=NORMAL`` that copy ends with
an fsync. That one commit then takes about 10 ms instead of a few hundred microseconds, and whatever
waits for it (a webhook's answer, a sensor's next batch, every workflow driver on the event loop)
waits too. :class:`LocalEventBus <engine.runtime.local.eventbus.LocalEventBus>` and the engine's
:class:`Store <engine.runtime.local.store.Store>` turn that automatic checkpoint off on their writer
connection and run a :class:`Checkpointer` instead: a thread with a connection of its own that runs a
PASSIVE checkpoint every ``interval`` seconds. A passive checkpoint never blocks a writer or a reader,
and one with nothing new to copy does nothing. Durability does not change: a commit is in the WAL
before it returns, checkpointed or not.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL = 0.5


def no_autocheckpoint(db: sqlite3.Connection) -> None:
    """Leave this connection's checkpoints to a :class:`Checkpointer`."""
    db.execute("PRAGMA wal_autocheckpoint=0")


class Checkpointer:
    """A daemon thread checkpointing ``path`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, path: Path, *, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sluice-checkpoint {path.name}", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("%s: no checkpoints: %s", self.path, exc)
            return
        try:
            while not self._stop.wait(self.interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # The next round tries again; until then the WAL only grows.
                    log.debug("%s: checkpoint failed: %s", self.path, exc)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()
