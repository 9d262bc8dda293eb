"""Conformance runs: Argo's own example corpus from ``../shared/conformance`` through the local runtime."""
