"""Event sources: the edge code that turns the outside world into events on the bus.

One module per source type, each driven by the runtimes (``sluice server``, ``sluice eventsource run``)
with what it serves, a ``publish`` callable into the bus, a cursor store where it keeps its place and a
secret lookup:

* :mod:`engine.events.sources.webhook` — HTTP endpoints (``spec.webhook``), one server per port;
* :mod:`engine.events.sources.calendar` — schedules and intervals (``spec.calendar``);
* :mod:`engine.events.sources.s3` — object events of an S3 bucket (``spec.minio``), by listing.
"""
