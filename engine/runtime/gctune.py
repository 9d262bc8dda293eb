"""Garbage-collector and thread-switching settings for long-running engines.

A running engine holds large, long-lived graphs (node maps, frames, parsed templates). CPython's
default thresholds make the oldest generation rescan that whole heap over and over while a big
workflow allocates, which turns linear planning into quadratic work. The runtimes call
:func:`tune_gc` once at start-up: fewer young collections, and older objects moved out of the
collector's reach after loading. Reference cycles are still collected.
"""

from __future__ import annotations

import gc
import sys

YOUNG_THRESHOLD = 50_000
SWITCH_INTERVAL = 0.001


def tune_switching() -> None:
    """Hand the GIL between threads every ``SWITCH_INTERVAL`` seconds instead of every 5 ms.

    The local bus and store do their SQLite work in threads of their own, which release the GIL while
    SQLite runs. A thread done with its commit then waits for the GIL until the event loop's thread
    blocks or the switch interval passes, and whatever awaits that commit (a webhook's answer, a
    sensor's next batch) waits with it.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)


def tune_gc() -> None:
    """Raise the young-generation threshold and freeze what has been loaded so far."""
    _, mid, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(mid, 20), max(old, 100))
    gc.freeze()
