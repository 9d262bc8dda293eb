"""The event bus contract (engine.runtime.base.EventBus), run against the embedded and the JetStream bus."""
