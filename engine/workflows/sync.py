"""Synchronization: mutexes and semaphores shared by workflows (``spec.synchronization`` / template level).

A :class:`LockManager` is plain in-memory data owned by a runtime and shared by all the reconcilers it
runs, so one workflow's lock holds back another's. Waiters queue by priority (higher first), then by
creation time, then by name; only the head of a queue may take a free slot, and several locks are
taken all together or not at all (Argo v3.6+). Holders are recorded in the workflow status
(``status.synchronization``) so a restarted runtime restores them before anything else runs.
Used by the reconciler; the runtime wakes waiting workflows through ``on_release``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LockRequest:
    """One lock a holder wants: the key, how many holders it admits, and the waiter's rank."""

    key: str
    limit: int


@dataclass(slots=True)
class _Lock:
    holders: list[str] = field(default_factory=list)
    # (negative priority, creation time, holder) so that sorting puts the next in line first.
    waiting: list[tuple[int, float, str]] = field(default_factory=list)


def mutex_key(namespace: str, name: str) -> str:
    return f"{namespace}/Mutex/{name}"


def semaphore_key(namespace: str, configmap: str, key: str) -> str:
    return f"{namespace}/ConfigMap/{configmap}/{key}"


class LockManager:
    def __init__(self, on_release: Callable[[str], None] | None = None) -> None:
        self._locks: dict[str, _Lock] = {}
        self.on_release = on_release

    def _lock(self, key: str) -> _Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = _Lock()
            self._locks[key] = lock
        return lock

    def holders(self, key: str) -> list[str]:
        lock = self._locks.get(key)
        return list(lock.holders) if lock else []

    def restore(self, key: str, holder: str) -> None:
        """Record a holding found in a persisted status (after a restart)."""
        lock = self._lock(key)
        if holder not in lock.holders:
            lock.holders.append(holder)

    def _grantable(self, lock: _Lock, req: LockRequest, holder: str) -> bool:
        if holder in lock.holders:
            return True
        free = req.limit - len(lock.holders)
        if free <= 0:
            return False
        ahead = [w[2] for w in sorted(lock.waiting)][:free]
        return holder in ahead

    def acquire(
        self, requests: Iterable[LockRequest], holder: str, *, priority: int = 0, created: float = 0.0
    ) -> bool:
        """Take every requested lock, or none and queue for all of them."""
        reqs = list(requests)
        for req in reqs:
            lock = self._lock(req.key)
            if holder not in lock.holders and all(w[2] != holder for w in lock.waiting):
                lock.waiting.append((-priority, created, holder))
        if not all(self._grantable(self._lock(r.key), r, holder) for r in reqs):
            return False
        for req in reqs:
            lock = self._lock(req.key)
            lock.waiting = [w for w in lock.waiting if w[2] != holder]
            if holder not in lock.holders:
                lock.holders.append(holder)
        return True

    def release(self, key: str, holder: str) -> bool:
        lock = self._locks.get(key)
        if lock is None:
            return False
        lock.waiting = [w for w in lock.waiting if w[2] != holder]
        if holder not in lock.holders:
            return False
        lock.holders.remove(holder)
        if self.on_release is not None:
            self.on_release(key)
        return True

    def forget(self, holder_prefix: str) -> None:
        """Drop every holding and wait of holders starting with ``holder_prefix`` (a finished workflow)."""
        for key, lock in self._locks.items():
            released = [h for h in lock.holders if h.startswith(holder_prefix)]
            lock.holders = [h for h in lock.holders if not h.startswith(holder_prefix)]
            lock.waiting = [w for w in lock.waiting if not w[2].startswith(holder_prefix)]
            if released and self.on_release is not None:
                self.on_release(key)

    def describe(self, key: str, limit: int) -> str:
        lock = self._locks.get(key)
        held = len(lock.holders) if lock else 0
        return f"Lock status: {held}/{limit}"
