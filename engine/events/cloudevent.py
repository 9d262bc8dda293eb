"""CloudEvents in and out of the events core, through the ``cloudevents`` SDK (2.x, ``cloudevents.core``).

Event sources (``engine.events.sources``) call :func:`build` for every event they emit and hand
:func:`to_bus` of it to the bus, which is the structured-JSON dict form of
:meth:`engine.events.model.Event.to_json`. The webhook source also calls :func:`parse_http` to recognise
a request that already is a CloudEvent, in binary mode (``ce-specversion`` and the other ``ce-*``
headers, the body is the data) or structured mode (``Content-Type: application/cloudevents+json``, the
body is the whole event), and :func:`context_of` / :func:`data_of` to keep what it carried.

Pure: the caller passes ids and times in; nothing here reads the clock or a random source. Times are
written as RFC 3339 in UTC with microseconds (``2024-05-01T12:00:00.250000Z``), so they sort as text.
A malformed CloudEvent raises :class:`engine.errors.ExprError`, as malformed events do elsewhere in the
events core.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from engine.errors import ExprError
from engine.events.model import Event
from engine.expr.encoding import from_json

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
JSON_CONTENT_TYPE = "application/json"
_REQUIRED = ("specversion", "id", "source", "type")
_JSON_TYPE = re.compile(r"^(application|text)/([a-z0-9.\-]+\+)?json$")


def media_type(content_type: str | None) -> str:
    """A ``Content-Type`` without parameters, in lower case: ``text/JSON; q=1`` -> ``text/json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    """Whether a content type means JSON: ``application/json``, ``text/json``, ``application/x+json``."""
    return _JSON_TYPE.match(media_type(content_type)) is not None


def format_time(t: datetime) -> str:
    """``t`` in UTC as RFC 3339 with microseconds and a ``Z``: ``2024-05-01T12:00:00.250000Z``."""
    if t.tzinfo is None:
        raise ExprError(f"event time {t.isoformat()} has no time zone")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(
    *,
    id: str,
    source: str,
    type: str,
    subject: str,
    time: datetime,
    data: dict[str, Any] | None,
) -> CloudEvent:
    """A CloudEvents 1.0 event with JSON ``data``, as every event source emits (Argo's attribute choice)."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": time,
        "datacontenttype": JSON_CONTENT_TYPE,
    }
    try:
        return CloudEvent(attributes, data)
    except BaseCloudEventException as exc:
        raise ExprError(f"cannot build the event: {_describe(exc)}") from exc


def to_bus(ce: CloudEvent) -> dict[str, Any]:
    """The event as the bus stores it: :meth:`Event.to_json`, with ``time`` as RFC 3339 text."""
    subject = ce.get_subject()
    when = ce.get_time()
    if subject is None or when is None:
        raise ExprError("an event for the bus needs a subject and a time")
    data = ce.get_data()
    if isinstance(data, bytes):
        raise ExprError("an event for the bus needs JSON data, not bytes")
    event = Event(
        id=ce.get_id(),
        source=ce.get_source(),
        type=ce.get_type(),
        subject=subject,
        time=format_time(when),
        data=data,
        datacontenttype=ce.get_datacontenttype() or JSON_CONTENT_TYPE,
        specversion=ce.get_specversion(),
    )
    return event.to_json()


def context_of(ce: CloudEvent) -> dict[str, Any]:
    """The event's attributes (extensions included) as JSON values; ``time`` as RFC 3339 text."""
    out: dict[str, Any] = {}
    for key, value in ce.get_attributes().items():
        out[key] = format_time(value) if isinstance(value, datetime) else value
    return out


def data_of(ce: CloudEvent) -> Any:
    """The event's data as a JSON value: parsed JSON, text, or base64 text for binary data."""
    data = ce.get_data()
    if isinstance(data, bytes):
        return base64.b64encode(data).decode("ascii")
    return data


# ------------------------------------------------------------------------------------------- parsing


class _StrictFormat(JSONFormat):
    """The SDK's JSON format, except that data declared as JSON must be valid JSON (the SDK falls back to
    text) and is read as the rest of the engine reads JSON (Go's numbers, no ``NaN``)."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        if not body:
            return None
        if datacontenttype is None or is_json_type(datacontenttype):
            return _json(body, "the CloudEvent's data")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body


_FORMAT = _StrictFormat()


def _json(body: bytes, what: str) -> Any:
    try:
        return from_json(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ExprError(f"{what} is not UTF-8 text") from exc
    except ExprError as exc:
        raise ExprError(f"{what} is not valid JSON: {exc}") from exc


def _received(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """The SDK's event factory for incoming events, without its defaults.

    The SDK makes up an ``id`` and stamps the current ``time`` when they are missing; an incoming event
    must carry its own id, and a time it did not send must not look as if it had.
    """
    missing = [k for k in _REQUIRED if not attributes.get(k)]
    if missing:
        raise ExprError(f"not a CloudEvent: missing attribute {', '.join(missing)}")
    sent_time = "time" in attributes
    try:
        ce = CloudEvent(attributes, data)
    except BaseCloudEventException as exc:
        raise ExprError(f"not a valid CloudEvent: {_describe(exc)}") from exc
    if not sent_time:
        ce.get_attributes().pop("time", None)
    return ce


def _describe(exc: BaseCloudEventException) -> str:
    if isinstance(exc, CloudEventValidationError):
        return "; ".join(f"{key}: {errors[0]}" for key, errors in exc.errors.items() if errors)
    return str(exc)


def parse_http(headers: Mapping[str, str], body: bytes) -> CloudEvent | None:
    """The CloudEvent an HTTP request carries, or None when it carries none.

    Binary mode is recognised by a ``ce-specversion`` header, structured mode by the content type
    ``application/cloudevents+json``. A request in either mode that is not a valid CloudEvents 1.0
    event (missing ``id``/``source``/``type``, another spec version, a bad ``time``, data declared
    JSON that is not) raises ExprError. Batched mode (``application/cloudevents-batch+json``) is not
    recognised: such a body is plain JSON to the caller.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    try:
        if "ce-specversion" in lowered:
            return from_binary(HTTPMessage(headers=lowered, body=body), _FORMAT, _received)  # type: ignore[return-value]
        if media_type(lowered.get("content-type")) == STRUCTURED_CONTENT_TYPE:
            return _structured(body)
    except ExprError:
        raise
    except (BaseCloudEventException, ValueError, TypeError, OverflowError) as exc:
        # The SDK reports a bad ce-time or an unparsable document as plain ValueErrors.
        raise ExprError(f"not a valid CloudEvent: {exc}") from exc
    return None


def _structured(body: bytes) -> CloudEvent:
    document = _json(body, "the structured CloudEvent")
    if not isinstance(document, dict):
        raise ExprError("a structured CloudEvent must be a JSON object")
    ce: CloudEvent = from_structured(HTTPMessage(headers={}, body=body), _FORMAT, _received)  # type: ignore[assignment]
    if "data" in document:
        # Take the data as the engine reads JSON, not as the SDK's json.loads did.
        ce = _received(dict(ce.get_attributes()), document["data"])
    return ce


__all__ = [
    "JSON_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "build",
    "context_of",
    "data_of",
    "format_time",
    "is_json_type",
    "media_type",
    "parse_http",
    "to_bus",
]
