"""Tests of the events core (engine.events): filters, parameters, conditions, sensors, actions."""
