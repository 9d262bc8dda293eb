"""A step's text outputs, read the same way by both runtimes: ``outputs.result`` and the one-newline trim.

The local step executor (``engine.runtime.local.executor``) reads them from its log and path files;
the Kubernetes ``wait`` container (``engine.runtime.kubernetes.executor``) from what ``sluice-run``
left in the pod's shared directory. One copy of the rules keeps the two runtimes' outputs identical.
"""

from __future__ import annotations

import os
from pathlib import Path

RESULT_LIMIT = 256 * 1024
"""``outputs.result`` keeps the last 256 KiB of stdout, as Argo does."""


def trim_one_newline(text: str) -> str:
    """Drop one trailing newline (``echo`` adds it), as Argo does for results and parameter files."""
    return text[:-1] if text.endswith("\n") else text


def read_result(path: Path) -> str:
    """The last RESULT_LIMIT bytes of stdout as text, one trailing newline trimmed."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            truncated = size > RESULT_LIMIT
            if truncated:
                f.seek(size - RESULT_LIMIT)
            data = f.read(RESULT_LIMIT)
    except FileNotFoundError:
        return ""
    if truncated:
        # Do not start the result in the middle of a UTF-8 sequence.
        skip = 0
        while skip < min(3, len(data)) and (data[skip] & 0xC0) == 0x80:
            skip += 1
        data = data[skip:]
    return trim_one_newline(data.decode("utf-8", errors="replace"))
