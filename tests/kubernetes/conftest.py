"""Fixtures for the Kubernetes runtime's tests: a fresh SLUICE_HOME for CLI calls."""

from tests.cli.support import home

__all__ = ["home"]
