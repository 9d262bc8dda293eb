"""Garbage-collector settings for long-running engines.

A running engine holds large, long-lived graphs (node maps, frames, parsed templates). CPython's
default thresholds make the oldest generation rescan that whole heap over and over while a big
workflow allocates, which turns linear planning into quadratic work. The runtimes call
:func:`tune_gc` once at start-up: fewer young collections, and older objects moved out of the
collector's reach after loading. Reference cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Raise the young-generation threshold and freeze what has been loaded so far."""
    _, mid, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(mid, 20), max(old, 100))
    gc.freeze()
