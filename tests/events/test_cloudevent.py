"""CloudEvents built, converted for the bus and parsed from HTTP requests (engine.events.cloudevent)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.errors import ExprError
from engine.events import cloudevent
from engine.events.model import Event

WHEN = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


def _binary_headers(**extra: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/orders",
        "ce-type": "com.example.order.created",
        "Content-Type": "application/json",
    }
    headers.update(extra)
    return headers


def test_build_then_to_bus_is_the_event_model_json_form():
    ce = cloudevent.build(
        id="abc123", source="webhook", type="webhook", subject="example", time=WHEN, data={"body": {"a": 1}}
    )
    out = cloudevent.to_bus(ce)
    assert out == {
        "id": "abc123",
        "source": "webhook",
        "specversion": "1.0",
        "type": "webhook",
        "subject": "example",
        "time": "2024-05-01T12:00:00.250000Z",
        "datacontenttype": "application/json",
        "data": {"body": {"a": 1}},
    }
    assert Event.from_json(out).to_json() == out
    json.dumps(out)  # the bus stores it as JSON


def test_format_time_is_utc_with_microseconds_even_on_whole_seconds():
    plus_two = timezone(timedelta(hours=2))
    assert (
        cloudevent.format_time(datetime(2024, 5, 1, 14, 0, 0, tzinfo=plus_two))
        == "2024-05-01T12:00:00.000000Z"
    )
    assert cloudevent.format_time(WHEN) == "2024-05-01T12:00:00.250000Z"


def test_format_time_refuses_a_naive_time():
    with pytest.raises(ExprError, match="no time zone"):
        cloudevent.format_time(datetime(2024, 5, 1, 12, 0, 0))


def test_to_bus_refuses_an_event_without_subject_or_time():
    ce = cloudevent.parse_http(_binary_headers(), b"{}")
    assert ce is not None
    with pytest.raises(ExprError, match="subject and a time"):
        cloudevent.to_bus(ce)


def test_to_bus_refuses_binary_data():
    headers = _binary_headers(
        **{"Content-Type": "application/octet-stream", "ce-subject": "s", "ce-time": "2024-05-01T12:00:00Z"}
    )
    ce = cloudevent.parse_http(headers, b"\xff\xfe")
    assert ce is not None
    with pytest.raises(ExprError, match="JSON data"):
        cloudevent.to_bus(ce)


def test_plain_request_is_not_a_cloudevent():
    assert cloudevent.parse_http({"Content-Type": "application/json"}, b'{"a": 1}') is None
    # A lone ce-* header without ce-specversion is just a header.
    assert cloudevent.parse_http({"ce-id": "x", "Content-Type": "application/json"}, b"{}") is None


def test_binary_mode_keeps_attributes_time_extensions_and_json_data():
    headers = _binary_headers(**{"ce-time": "2024-05-01T14:00:00.5+02:00", "ce-traceparent": "00-ab"})
    ce = cloudevent.parse_http(headers, b'{"order": 7, "items": [1, 2]}')
    assert ce is not None
    assert ce.get_id() == "evt-1"
    assert cloudevent.data_of(ce) == {"order": 7, "items": [1, 2]}
    assert cloudevent.context_of(ce) == {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/orders",
        "type": "com.example.order.created",
        "datacontenttype": "application/json",
        "time": "2024-05-01T12:00:00.500000Z",
        "traceparent": "00-ab",
    }


def test_binary_mode_headers_match_whatever_their_case():
    headers = {k.upper(): v for k, v in _binary_headers().items()}
    ce = cloudevent.parse_http(headers, b"[1]")
    assert ce is not None
    assert ce.get_source() == "/orders"


def test_an_event_without_time_has_no_time_attribute():
    ce = cloudevent.parse_http(_binary_headers(), b"{}")
    assert ce is not None
    assert ce.get_time() is None
    assert "time" not in cloudevent.context_of(ce)


def test_binary_mode_without_body_has_null_data():
    ce = cloudevent.parse_http(_binary_headers(), b"")
    assert ce is not None
    assert cloudevent.data_of(ce) is None


def test_binary_mode_text_data_stays_text_and_bytes_become_base64():
    text = cloudevent.parse_http(_binary_headers(**{"Content-Type": "text/plain"}), b"not json")
    assert text is not None
    assert cloudevent.data_of(text) == "not json"
    raw = cloudevent.parse_http(_binary_headers(**{"Content-Type": "application/octet-stream"}), b"\x00\xff")
    assert raw is not None
    assert cloudevent.data_of(raw) == base64.b64encode(b"\x00\xff").decode()


@pytest.mark.parametrize("body", [b"{not json", b'{"a": NaN}', b"\xff\xfe"])
def test_binary_mode_json_data_must_be_valid_json(body):
    with pytest.raises(ExprError, match="data"):
        cloudevent.parse_http(_binary_headers(), body)


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type"])
def test_binary_mode_without_a_required_attribute_is_refused(missing):
    headers = _binary_headers()
    del headers[missing]
    with pytest.raises(ExprError, match=f"missing attribute {missing[3:]}"):
        cloudevent.parse_http(headers, b"{}")


def test_binary_mode_other_spec_version_is_refused():
    with pytest.raises(ExprError, match="specversion"):
        cloudevent.parse_http(_binary_headers(**{"ce-specversion": "0.3"}), b"{}")


def test_binary_mode_bad_time_is_refused():
    with pytest.raises(ExprError, match="not a valid CloudEvent"):
        cloudevent.parse_http(_binary_headers(**{"ce-time": "yesterday"}), b"{}")


def test_structured_mode_reads_the_whole_event_from_the_body():
    doc = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/billing",
        "type": "invoice.paid",
        "subject": "inv-9",
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "tenant": "acme",
        "data": {"amount": 12.5, "big": 2**60},
    }
    ce = cloudevent.parse_http(
        {"Content-Type": "application/cloudevents+json; charset=utf-8"}, json.dumps(doc).encode()
    )
    assert ce is not None
    assert ce.get_id() == "s-1"
    assert ce.get_time() == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    # Numbers are read as the rest of the engine reads JSON: integers past 2**53 become floats, as in Go.
    assert cloudevent.data_of(ce) == {"amount": 12.5, "big": float(2**60)}
    context = cloudevent.context_of(ce)
    assert context["tenant"] == "acme"
    assert context["subject"] == "inv-9"
    assert context["time"] == "2024-05-01T12:00:00.000000Z"


def test_structured_mode_base64_data_is_kept_as_base64_text():
    doc = {"specversion": "1.0", "id": "b", "source": "/s", "type": "t", "data_base64": "AAEC"}
    ce = cloudevent.parse_http({"content-type": "application/cloudevents+json"}, json.dumps(doc).encode())
    assert ce is not None
    assert ce.get_data() == b"\x00\x01\x02"
    assert cloudevent.data_of(ce) == "AAEC"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "JSON object"),
        (b"{broken", "not valid JSON"),
        (b'{"id": "x", "source": "/s", "type": "t"}', "missing attribute specversion"),
        (b'{"specversion": "1.0", "source": "/s", "type": "t"}', "missing attribute id"),
    ],
)
def test_structured_mode_invalid_documents_are_refused(body, message):
    with pytest.raises(ExprError, match=message):
        cloudevent.parse_http({"Content-Type": "application/cloudevents+json"}, body)


def test_is_json_type_accepts_json_and_suffixed_json_types():
    assert cloudevent.is_json_type("application/json; charset=utf-8")
    assert cloudevent.is_json_type("application/vnd.api+json")
    assert cloudevent.is_json_type("text/json")
    assert not cloudevent.is_json_type("text/plain")
    assert not cloudevent.is_json_type("application/x-www-form-urlencoded")
