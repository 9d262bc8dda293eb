"""sluice-run, the static program in front of every step container, built for the tests.

The ``wrapper`` fixture compiles ``engine/runtime/kubernetes/sluice-run.c`` with the host's C compiler
once per session (the executor image build compiles it the same way). Used by
``tests/kubernetes/test_sluice_run.py`` and ``tests/kubernetes/test_executor.py``; import the fixture
into the test module.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "engine" / "runtime" / "kubernetes" / "sluice-run.c"


@pytest.fixture(scope="session")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The path of a freshly built sluice-run; the test is skipped (reason printed) without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        reason = "no C compiler on this machine to build sluice-run (the image build compiles it)"
        print(reason)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("bin") / "sluice-run"
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(SOURCE)], check=True)
    return out
