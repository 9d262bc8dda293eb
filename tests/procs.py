"""Process inspection for tests, independent of the executor's own markers: who is still alive.

Used by the executor tests (``tests/runtime_local``) and the CLI, server and crash tests, which put a
unique token in a step's command line and look for it in ``/proc``.
"""

from __future__ import annotations

import os
import time


def pids_with(token: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``token``, this process excluded."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != b"Z":
            found.append(int(name))
    return found


def wait_gone(token: str, timeout: float = 5) -> list[int]:
    """Poll until no process carries ``token``; return the survivors (empty on success)."""
    deadline = time.monotonic() + timeout
    while True:
        left = pids_with(token)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)
