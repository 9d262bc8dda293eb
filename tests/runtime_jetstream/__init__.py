"""Tests of the JetStream event bus (engine.runtime.jetstream) against a real nats-server."""
