"""Fixtures for the server tests: a fresh SLUICE_HOME, a shared directory and a running server."""

from tests.cli.support import home, server, shared

__all__ = ["home", "server", "shared"]
