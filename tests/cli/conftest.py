"""Fixtures for the command-line tests: a fresh SLUICE_HOME and a directory shared with steps."""

from tests.cli.support import home, shared

__all__ = ["home", "shared"]
