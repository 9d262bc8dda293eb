"""The events core: Argo Events' model of event sources, sensors and triggers, without I/O.

* :mod:`engine.events.model` — the event (a CloudEvents 1.0 context plus JSON data);
* :mod:`engine.events.validate` — what parsing cannot see in EventSources, Sensors and EventBuses;
* :mod:`engine.events.filters` — dependency filters (data, exprs, context, time);
* :mod:`engine.events.conditions` — a trigger's ``conditions`` expression;
* :mod:`engine.events.sensor` — per-trigger state: hold, fire, clear, reset, deduplicate;
* :mod:`engine.events.parameters` — trigger parameters from event data into objects and payloads;
* :mod:`engine.events.actions` — a firing turned into an action for a runtime to carry out.

``engine.events.sources`` (webhook, calendar, S3) and the edge code that runs actions sit at the edge:
they do I/O and are driven by the runtimes (``sluice server``, ``sluice eventsource run``,
``sluice sensor run``).
"""
