"""The S3 event source: the pure listing diff and event shapes (engine.events.s3watch) as tables, and the
poller (engine.events.sources.s3) against a real S3 endpoint, moto's server from tests/s3server.py,
with the real embedded event bus where deduplication matters."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from engine.errors import ExprError, ProviderError, SpecError, StateError, StoreError, UnsupportedError
from engine.events import s3watch
from engine.events.model import Event
from engine.events.s3watch import CREATED, REMOVED, Change, Cursor, ObjectInfo, Scope
from engine.events.sources.s3 import S3Source, cursor_key
from engine.expr import gjson
from engine.runtime.local.eventbus import LocalEventBus, events_path
from engine.runtime.s3 import open_bucket
from engine.spec.events import EventSource
from tests.s3server import ACCESS_KEY, BUCKET, MOTO_SERVER, SECRET_KEY, MotoS3, _start, _stop, moto_server, s3

__all__ = ["moto_server", "s3"]  # the fixtures, for pytest

T = TypeVar("T")
NS = "default"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return asyncio.run(main())


def info(etag: str, size: int = 1, at: int = 0) -> ObjectInfo:
    """An object generation written ``at`` seconds after T0."""
    return ObjectInfo(etag=etag, size=size, last_modified=s3watch.s3_time(T0 + timedelta(seconds=at)))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ================================================================================================ pure: diff

A, B, C = info("a", at=1), info("b", at=2), info("c", at=3)

DIFF_CASES: list[
    tuple[str, dict[str, ObjectInfo], dict[str, ObjectInfo], dict[str, Any], list[tuple[str, str]]]
] = [
    ("nothing changed", {"x": A}, {"x": A}, {}, []),
    ("a new key is created", {}, {"x": A}, {}, [(CREATED, "x")]),
    ("a vanished key is removed", {"x": A}, {}, {}, [(REMOVED, "x")]),
    ("a new etag is a new object", {"x": A}, {"x": info("a2", at=1)}, {}, [(CREATED, "x")]),
    ("a new size is a new object", {"x": A}, {"x": info("a", size=9, at=1)}, {}, [(CREATED, "x")]),
    ("same content written later is a new object", {"x": A}, {"x": info("a", at=60)}, {}, [(CREATED, "x")]),
    (
        "ordered by LastModified",
        {},
        {"late": C, "early": A, "mid": B},
        {},
        [(CREATED, "early"), (CREATED, "mid"), (CREATED, "late")],
    ),
    ("same time: ordered by key", {}, {"b": A, "a": A}, {}, [(CREATED, "a"), (CREATED, "b")]),
    (
        "removal sorts by the vanished generation",
        {"old": A, "y": C},
        {"y": C, "new": B},
        {},
        [(REMOVED, "old"), (CREATED, "new")],
    ),
    ("prefix", {}, {"in/x": A, "out/x": B}, {"prefix": "in/"}, [(CREATED, "in/x")]),
    ("suffix", {"a.txt": A, "a.bin": B}, {}, {"suffix": ".txt"}, [(REMOVED, "a.txt")]),
    (
        "prefix and suffix",
        {},
        {"in/a.txt": A, "in/a.bin": B, "a.txt": C},
        {"prefix": "in/", "suffix": ".txt"},
        [(CREATED, "in/a.txt")],
    ),
    ("bucket.key: only that key", {}, {"k": A, "k2": B}, {"key": "k"}, [(CREATED, "k")]),
    ("only created", {"gone": A}, {"new": B}, {"events": ("s3:ObjectCreated:Put",)}, [(CREATED, "new")]),
    ("created wildcard", {"gone": A}, {"new": B}, {"events": ("s3:ObjectCreated:*",)}, [(CREATED, "new")]),
    ("only removed", {"gone": A}, {"new": B}, {"events": ("s3:ObjectRemoved:Delete",)}, [(REMOVED, "gone")]),
    ("removed wildcard", {"gone": A}, {"new": B}, {"events": ("s3:ObjectRemoved:*",)}, [(REMOVED, "gone")]),
    (
        "both, as Argo's example lists them",
        {"gone": A},
        {"new": B},
        {"events": ("s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete")},
        [(REMOVED, "gone"), (CREATED, "new")],
    ),
    (
        "unobservable names beside an observable one are skipped",
        {"gone": A},
        {"new": B},
        {"events": ("s3:ObjectCreated:Copy", "s3:ObjectRemoved:Delete")},
        [(REMOVED, "gone")],
    ),
]


@pytest.mark.parametrize(
    ("previous", "current", "options", "expected"),
    [case[1:] for case in DIFF_CASES],
    ids=[case[0] for case in DIFF_CASES],
)
def test_diff_reports_wanted_changes_in_order(
    previous: dict[str, ObjectInfo],
    current: dict[str, ObjectInfo],
    options: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    changes = s3watch.diff(previous, current, **options)
    assert [(c.event_name, c.key) for c in changes] == expected
    for c in changes:
        assert c.info == (current[c.key] if c.event_name == CREATED else previous[c.key])


def test_events_list_of_only_unobservable_names_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="cannot be observed by listing"):
        s3watch.wanted(["s3:ObjectCreated:Copy", "s3:ObjectRemoved:DeleteMarkerCreated"])
    assert s3watch.wanted([]) == {CREATED, REMOVED}


def test_s3_time_is_utc_with_milliseconds() -> None:
    t = datetime(2024, 5, 1, 14, 0, 0, 250_999, tzinfo=UTC)
    assert s3watch.s3_time(t) == "2024-05-01T14:00:00.250Z"
    assert s3watch.s3_time(t.astimezone(timezone(timedelta(hours=2)))) == "2024-05-01T14:00:00.250Z"
    with pytest.raises(ExprError):
        s3watch.s3_time(datetime(2024, 5, 1))
    assert s3watch.object_info(etag='"abc"', size=3, last_modified=t) == ObjectInfo(
        "abc", 3, "2024-05-01T14:00:00.250Z"
    )


# ============================================================================================== pure: events


def event(change: Change, **overrides: Any) -> Event:
    args: dict[str, Any] = {
        "namespace": NS,
        "source_name": "minio",
        "event_name": "example",
        "bucket": "input",
        "change": change,
        "metadata": {},
        "region": "us-east-1",
        "origin": "minio:s3",
        "observed_at": T0 + timedelta(minutes=5),
    }
    return s3watch.event_for(**{**args, **overrides})


def test_created_event_carries_an_s3_notification_record() -> None:
    e = event(Change(CREATED, "dir/a.txt", info("abc", size=12, at=1)), metadata={"team": "data"})
    assert (e.source, e.subject, e.type, e.time) == (
        "minio",
        "example",
        "minio",
        "2024-05-01T12:05:00.000000Z",
    )
    assert e.data == {
        "notification": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2024-05-01T12:00:01.000Z",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {"name": "input", "arn": "arn:aws:s3:::input"},
                    "object": {
                        "key": "dir/a.txt",
                        "size": 12,
                        "eTag": "abc",
                        "sequencer": "17CB5B9A33FE4A00",
                    },
                },
            }
        ],
        "metadata": {"team": "data"},
    }
    # The sensors in Argo's examples read these paths.
    assert gjson.get(e.data, "notification.0.s3.bucket.name") == "input"
    assert gjson.get(e.data, "notification.0.s3.object.key") == "dir/a.txt"


def test_removed_event_is_dated_when_observed_and_names_only_key_and_sequencer() -> None:
    e = event(Change(REMOVED, "a.txt", info("abc", at=1)))
    (rec,) = e.data["notification"]
    assert rec["eventName"] == "s3:ObjectRemoved:Delete"
    assert rec["eventTime"] == "2024-05-01T12:05:00.000Z"
    assert set(rec["s3"]["object"]) == {"key", "sequencer"}
    assert "metadata" not in e.data  # omitted when the source sets none, as Argo does


def test_event_ids_are_deterministic_and_differ_per_generation_event_and_source() -> None:
    change = Change(CREATED, "a.txt", info("abc", at=1))
    first = event(change).id
    assert len(first) == 32 and int(first, 16) >= 0
    assert event(change, observed_at=T0 + timedelta(hours=3)).id == first  # the poll time is not identity
    others = {
        event(Change(CREATED, "a.txt", info("abd", at=1))).id,
        event(Change(CREATED, "a.txt", info("abc", at=2))).id,  # same content written again
        event(Change(REMOVED, "a.txt", info("abc", at=1))).id,
        event(Change(CREATED, "b.txt", info("abc", at=1))).id,
        event(change, bucket="other").id,
        event(change, event_name="other").id,
        event(change, source_name="other").id,
        event(change, namespace="other").id,
    }
    assert first not in others and len(others) == 8


@pytest.mark.parametrize(
    ("endpoint", "origin"),
    [
        ("s3.amazonaws.com", "aws:s3"),
        ("s3.eu-west-1.amazonaws.com:443", "aws:s3"),
        ("minio-service.argo-events:9000", "minio:s3"),
        ("127.0.0.1:9000", "minio:s3"),
        ("notamazonaws.com", "minio:s3"),
    ],
)
def test_record_event_source_names_aws_only_for_aws_endpoints(endpoint: str, origin: str) -> None:
    assert s3watch.origin_for(endpoint) == origin


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("notification[0].s3.object.size > 10", True),
        ("notification[0].s3.object.size > 100", False),
        ('notification[0].s3.object.key endsWith ".txt"', True),
        ('x_y == "z"', True),  # top-level '-' is read as '_'
    ],
)
def test_event_filter_expression_reads_the_event_data(expression: str, expected: bool) -> None:
    data = {**event(Change(CREATED, "a.txt", info("abc", size=12))).data, "x-y": "z"}
    assert s3watch.passes_expression(expression, data) is expected


def test_event_filter_expression_that_is_not_boolean_is_an_error() -> None:
    with pytest.raises(ExprError, match="true or false"):
        s3watch.passes_expression("notification[0].s3.object.size", event(Change(CREATED, "a", A)).data)


# ============================================================================================== pure: cursor

SCOPE = Scope(endpoint="h:1", bucket="b", prefix="p/", suffix=".txt")


def test_cursor_survives_json_with_its_pending_batch() -> None:
    pending = (Change(CREATED, "p/a.txt", A), Change(REMOVED, "p/b.txt", B))
    cursor = Cursor(SCOPE, {"p/a.txt": A}, pending, T0)
    raw = json.loads(json.dumps(cursor.to_json()))
    assert Cursor.from_json(raw, SCOPE) == cursor
    assert Cursor.from_json(json.loads(json.dumps(cursor.settled().to_json())), SCOPE) == Cursor(
        SCOPE, {"p/a.txt": A}
    )


def test_cursor_of_another_scope_is_not_used() -> None:
    raw = Cursor(SCOPE, {"p/a.txt": A}).to_json()
    for other in (
        Scope(endpoint="h:2", bucket="b", prefix="p/", suffix=".txt"),
        Scope(endpoint="h:1", bucket="c", prefix="p/", suffix=".txt"),
        Scope(endpoint="h:1", bucket="b", prefix="q/", suffix=".txt"),
        Scope(endpoint="h:1", bucket="b", prefix="p/", suffix=".bin"),
        Scope(endpoint="h:1", bucket="b", prefix="p/", suffix=".txt", key="p/a.txt"),
    ):
        assert Cursor.from_json(raw, other) is None


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"version": 99},
        {"version": 1, "scope": SCOPE.to_json()},
        {"version": 1, "scope": SCOPE.to_json(), "objects": {"k": ["e", "not-a-size", "t"]}},
        {"version": 1, "scope": SCOPE.to_json(), "objects": {"k": ["e", 1]}},
        {"version": 1, "scope": SCOPE.to_json(), "objects": {}, "pending": {"changes": []}},
        {
            "version": 1,
            "scope": SCOPE.to_json(),
            "objects": {},
            "pending": {"observedAt": "2024-05-01T00:00:00Z", "changes": [["s3:Other", "k", "e", 1, "t"]]},
        },
    ],
)
def test_malformed_cursor_is_a_store_error(raw: dict[str, Any]) -> None:
    with pytest.raises(StoreError):
        Cursor.from_json(raw, SCOPE)


def test_pending_batch_needs_its_observation_time() -> None:
    with pytest.raises(StateError):
        Cursor(SCOPE, {}, (Change(CREATED, "k", A),))


# ================================================================================================= the poller


class MemoryCursors:
    """A CursorStore in a dict; values go through JSON, as a durable store would keep them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.puts = 0

    async def get(self, key: str) -> dict[str, Any] | None:
        text = self.values.get(key)
        return None if text is None else json.loads(text)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = json.dumps(value)
        self.puts += 1


class Published:
    """A publish callable that records every event handed to it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, namespace: str, event: dict[str, Any]) -> int:
        assert namespace == NS
        self.events.append(copy.deepcopy(event))
        return len(self.events)

    def take(self) -> list[tuple[str, str]]:
        """(eventName, key) of the events since the last take, in order."""
        out = [
            (e["data"]["notification"][0]["eventName"], e["data"]["notification"][0]["s3"]["object"]["key"])
            for e in self.events
        ]
        self.events.clear()
        return out


SECRETS = {("default", "artifacts-minio"): {"accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}}


def lookup(
    secrets: Mapping[tuple[str, str], Mapping[str, str]] = SECRETS,
) -> Callable[[str, str], Mapping[str, str] | None]:
    return lambda namespace, name: secrets.get((namespace, name))


def manifest(server: MotoS3, **entry: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "bucket": {"name": BUCKET},
        "endpoint": server.endpoint,
        "insecure": True,
        "accessKey": {"name": "artifacts-minio", "key": "accesskey"},
        "secretKey": {"name": "artifacts-minio", "key": "secretkey"},
        **entry,
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "EventSource",
        "metadata": {"name": "minio", "namespace": NS},
        "spec": {"minio": {"example": spec}},
    }


def source(
    doc: Mapping[str, Any],
    *,
    cursors: Any,
    publish: Any,
    secrets: Callable[[str, str], Mapping[str, str] | None] | None = None,
    **options: Any,
) -> S3Source:
    es = EventSource.parse(doc)
    ((name, spec),) = es.spec.minio.items()
    return S3Source(
        namespace=NS,
        event_source=es,
        event_name=name,
        spec=spec,
        publish=publish,
        cursors=cursors,
        secrets=secrets or lookup(),
        connect=open_bucket,
        **options,
    )


_clients: dict[str, Any] = {}


def client(server: MotoS3) -> Any:
    """The test's own S3 client for ``server`` (made once: making a boto3 client is slow)."""
    if server.url not in _clients:
        _clients[server.url] = server.client()
    return _clients[server.url]


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, failing the test after ``timeout`` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def put(server: MotoS3, key: str, body: bytes) -> None:
    client(server).put_object(Bucket=BUCKET, Key=key, Body=body)


def delete(server: MotoS3, key: str) -> None:
    client(server).delete_object(Bucket=BUCKET, Key=key)


def test_list_objects_returns_keys_etags_sizes_and_times_under_a_prefix(s3: MotoS3) -> None:
    for key, body in (("in/b.txt", b"bb"), ("in/a.txt", b"a"), ("out/c.txt", b"ccc")):
        put(s3, key, body)
    bucket = open_bucket(
        bucket=BUCKET, endpoint=s3.endpoint, insecure=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    listed = bucket.list_objects("in/")
    assert [(o.key, o.etag, o.size) for o in listed] == [
        ("in/a.txt", md5(b"a"), 1),
        ("in/b.txt", md5(b"bb"), 2),
    ]
    assert all(o.last_modified.tzinfo is not None for o in listed)
    assert len(bucket.list_objects()) == 3
    with pytest.raises(ProviderError, match="more than 2 objects"):
        bucket.list_objects(limit=2)


def test_first_poll_takes_the_bucket_as_it_is_and_later_objects_are_created_events(s3: MotoS3) -> None:
    put(s3, "old.txt", b"old")
    cursors, published = MemoryCursors(), Published()
    src = source(manifest(s3, metadata={"team": "data"}), cursors=cursors, publish=published)

    async def scenario() -> None:
        assert await src.poll_once() == 0
        assert published.events == [] and cursor_key(NS, "minio", "example") in cursors.values
        put(s3, "new.txt", b"hello")
        assert await src.poll_once() == 1
        assert await src.poll_once() == 0  # nothing changed since

    run(scenario)
    (ce,) = published.events
    assert {k: ce[k] for k in ("specversion", "type", "source", "subject", "datacontenttype")} == {
        "specversion": "1.0",
        "type": "minio",
        "source": "minio",
        "subject": "example",
        "datacontenttype": "application/json",
    }
    (rec,) = ce["data"]["notification"]
    assert rec["eventName"] == "s3:ObjectCreated:Put"
    assert rec["s3"]["bucket"]["name"] == BUCKET
    assert rec["s3"]["object"] | {"sequencer": None} == {
        "key": "new.txt",
        "size": 5,
        "eTag": md5(b"hello"),
        "sequencer": None,
    }
    assert ce["data"]["metadata"] == {"team": "data"}
    assert Event.from_json(ce).id == ce["id"]


def test_overwrite_is_a_new_created_event_and_delete_a_removed_event(s3: MotoS3) -> None:
    put(s3, "a.txt", b"one")
    published = Published()
    src = source(manifest(s3), cursors=MemoryCursors(), publish=published)

    async def scenario() -> None:
        await src.poll_once()
        put(s3, "a.txt", b"two")
        await src.poll_once()
        assert published.take() == [(CREATED, "a.txt")]
        delete(s3, "a.txt")
        await src.poll_once()
        assert published.take() == [(REMOVED, "a.txt")]
        put(s3, "a.txt", b"one")  # the first content again: a new object, a new event
        await src.poll_once()

    run(scenario)
    assert [e["data"]["notification"][0]["s3"]["object"]["eTag"] for e in published.events] == [md5(b"one")]


def test_prefix_suffix_key_and_events_select_what_is_published(s3: MotoS3) -> None:
    cases: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
        (
            {"filter": {"prefix": "in/"}},
            [(CREATED, "in/a.txt"), (CREATED, "in/b.bin"), (REMOVED, "in/gone.txt")],
        ),
        (
            {"filter": {"suffix": ".txt"}},
            [(CREATED, "in/a.txt"), (CREATED, "out/c.txt"), (REMOVED, "in/gone.txt")],
        ),
        ({"filter": {"prefix": "in/", "suffix": ".txt"}}, [(CREATED, "in/a.txt"), (REMOVED, "in/gone.txt")]),
        ({"bucket": {"name": BUCKET, "key": "out/c.txt"}}, [(CREATED, "out/c.txt")]),
        (
            {"events": ["s3:ObjectCreated:*"]},
            [(CREATED, "in/a.txt"), (CREATED, "in/b.bin"), (CREATED, "out/c.txt")],
        ),
        ({"events": ["s3:ObjectRemoved:Delete"]}, [(REMOVED, "in/gone.txt")]),
        (
            {"eventFilter": {"expression": "notification[0].s3.object.size >= 2"}},
            [(CREATED, "in/b.bin"), (CREATED, "out/c.txt")],
        ),
    ]
    for entry, expected in cases:
        s3.reset()
        client(s3).create_bucket(Bucket=BUCKET)
        put(s3, "in/gone.txt", b"x")
        published = Published()
        src = source(manifest(s3, **entry), cursors=MemoryCursors(), publish=published)

        async def scenario(src: S3Source = src) -> None:
            await src.poll_once()
            delete(s3, "in/gone.txt")
            # Distinct LastModified seconds would be needed to order by time; keys decide within a second.
            for key, body in (("in/a.txt", b"a"), ("in/b.bin", b"bb"), ("out/c.txt", b"ccc")):
                put(s3, key, body)
            await src.poll_once()

        run(scenario)
        got = sorted(published.take())
        assert got == sorted(expected), entry


def test_restart_publishes_exactly_the_changes_made_while_down(s3: MotoS3) -> None:
    for key in ("keep.txt", "change.txt", "drop.txt"):
        put(s3, key, key.encode())
    cursors, published = MemoryCursors(), Published()
    run(source(manifest(s3), cursors=cursors, publish=published).poll_once)
    # The source is down: the bucket changes.
    put(s3, "change.txt", b"changed")
    delete(s3, "drop.txt")
    put(s3, "added.txt", b"added")
    again = source(manifest(s3), cursors=cursors, publish=published)

    async def scenario() -> None:
        assert await again.poll_once() == 3
        assert await again.poll_once() == 0

    run(scenario)
    assert sorted(published.take()) == sorted(
        [(CREATED, "change.txt"), (REMOVED, "drop.txt"), (CREATED, "added.txt")]
    )
    # A third incarnation has nothing to add either.
    assert run(source(manifest(s3), cursors=cursors, publish=published).poll_once) == 0


class BusCursors:
    """The sources' cursors in the bus's key-value store, failing every put once ``broken``."""

    def __init__(self, bus: LocalEventBus) -> None:
        self.bus = bus
        self.broken = False

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self.bus.kv_get("sources", key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        if self.broken:
            raise StoreError("disk full")
        await self.bus.kv_put("sources", key, value)


def test_crash_between_publishing_and_saving_the_cursor_republishes_the_same_ids_once_on_the_bus(
    s3: MotoS3, tmp_path: Path
) -> None:
    put(s3, "a.txt", b"a")

    async def scenario() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        try:
            cursors = BusCursors(bus)
            ids: list[str] = []
            crash_after_publishing = True

            async def publish(namespace: str, event: dict[str, Any]) -> int:
                ids.append(event["id"])
                seq = await bus.publish(namespace, event)
                # The process dies after the bus took the event, before it records the poll as done.
                cursors.broken = crash_after_publishing
                return seq

            first = source(manifest(s3), cursors=cursors, publish=publish)
            await first.poll_once()
            put(s3, "b.txt", b"b")
            delete(s3, "a.txt")
            with pytest.raises(StoreError, match="disk full"):
                await first.poll_once()
            crashed = list(ids)
            assert len(crashed) == 2

            # While it is down, the object it just announced goes again and another one comes; a new
            # process takes over the same store.
            delete(s3, "b.txt")
            put(s3, "c.txt", b"c")
            crash_after_publishing = cursors.broken = False
            ids.clear()
            second = source(manifest(s3), cursors=cursors, publish=publish)
            assert await second.poll_once() == 4
            assert ids[:2] == crashed  # the interrupted batch again, same ids, same order
            records = await bus.read(limit=100)
            keys = [r.event["data"]["notification"][0]["s3"]["object"]["key"] for r in records]
            names = [r.event["data"]["notification"][0]["eventName"] for r in records]
            # Each change once on the bus, the removal of b.txt included, which a diff against the
            # listing from before the crash could not have seen.
            assert sorted(zip(names, keys, strict=True)) == sorted(
                [(CREATED, "b.txt"), (REMOVED, "a.txt"), (REMOVED, "b.txt"), (CREATED, "c.txt")]
            )
            assert await second.poll_once() == 0
        finally:
            await bus.close()

    run(scenario)


def test_reconfigured_watch_lists_afresh_without_events(s3: MotoS3) -> None:
    put(s3, "in/a.txt", b"a")
    put(s3, "other/b.txt", b"b")
    cursors, published = MemoryCursors(), Published()
    run(source(manifest(s3, filter={"prefix": "in/"}), cursors=cursors, publish=published).poll_once)
    widened = source(manifest(s3), cursors=cursors, publish=published)
    assert run(widened.poll_once) == 0  # other/b.txt existed before this watch began
    put(s3, "other/c.txt", b"c")
    assert run(widened.poll_once) == 1
    assert published.take() == [(CREATED, "other/c.txt")]


def test_too_large_a_listing_is_refused_with_a_clear_error(
    s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3watch, "MAX_OBJECTS", 2)
    for key in ("a", "b", "c"):
        put(s3, key, b"x")
    src = source(manifest(s3), cursors=MemoryCursors(), publish=Published())
    with pytest.raises(ProviderError, match="more than 2 objects"):
        run(src.poll_once)


def test_missing_secret_is_a_clear_error(s3: MotoS3) -> None:
    src = source(manifest(s3), cursors=MemoryCursors(), publish=Published(), secrets=lookup({}))
    with pytest.raises(ProviderError, match=r"Secret default/artifacts-minio \(accessKey\) not found"):
        run(src.poll_once)
    no_key = lookup({("default", "artifacts-minio"): {"accesskey": ACCESS_KEY}})
    src = source(manifest(s3), cursors=MemoryCursors(), publish=Published(), secrets=no_key)
    with pytest.raises(ProviderError, match=r"\(secretKey\) has no key 'secretkey'"):
        run(src.poll_once)


def test_construction_refuses_what_cannot_run(s3: MotoS3) -> None:
    kw: dict[str, Any] = {"cursors": MemoryCursors(), "publish": Published()}
    with pytest.raises(UnsupportedError, match=r"spec.minio.example.events: .*cannot be observed"):
        source(manifest(s3, events=["s3:ObjectCreated:Copy"]), **kw)
    with pytest.raises(UnsupportedError, match="caCertificate"):
        source(manifest(s3, caCertificate={"name": "ca", "key": "ca.crt"}), **kw)
    with pytest.raises(SpecError, match="endpoint"):
        source(manifest(s3, endpoint=f"http://{s3.endpoint}"), **kw)
    with pytest.raises(SpecError, match=r"eventFilter\.expression"):
        source(manifest(s3, eventFilter={"expression": "notification[0] >"}), **kw)


@pytest.fixture(scope="module")
def strict_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A second moto server that checks credentials (moto accepts any keys unless told otherwise)."""
    if not MOTO_SERVER.exists():
        pytest.skip(f"moto_server not found at {MOTO_SERVER} (the test extras install it)")
    saved = os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT")
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    try:
        server = _start(tmp_path_factory.mktemp("strict-moto") / "moto.log")
    finally:
        if saved is None:
            del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
        else:
            os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = saved
    try:
        yield server
    finally:
        _stop(server)


def test_rejected_credentials_are_a_clear_error_retried_with_growing_delays(strict_moto: MotoS3) -> None:
    cursors = MemoryCursors()
    delays: list[float] = []
    src: S3Source | None = None

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        assert src is not None
        assert src.last_error is not None and "InvalidAccessKeyId" in src.last_error
        if len(delays) == 5:
            await src.stop()

    src = source(
        manifest(strict_moto),
        cursors=cursors,
        publish=Published(),
        poll_interval=0.5,
        max_backoff=6.0,
        sleep=sleep,
    )
    run(src.run)
    assert delays == [1.0, 2.0, 4.0, 6.0, 6.0]
    assert src.failures == 5 and cursors.puts == 0
    assert src.last_error is not None
    assert src.last_error.startswith(f"EventSource {NS}/minio event 'example': ")
    assert "access denied" in src.last_error and "check the access key and secret key" in src.last_error


def test_run_polls_until_stopped_and_stop_interrupts_the_wait(s3: MotoS3) -> None:
    published, cursors = Published(), MemoryCursors()
    src = source(manifest(s3), cursors=cursors, publish=published, poll_interval=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(src.run())
        await until(lambda: cursors.puts)  # the first poll has taken the bucket as it is
        put(s3, "a.txt", b"a")
        await until(lambda: published.events)
        await asyncio.wait_for(src.stop(), timeout=5)
        await asyncio.wait_for(task, timeout=5)

    run(scenario)
    assert published.take() == [(CREATED, "a.txt")]
    assert src.failures == 0 and src.last_error is None


def test_stop_during_a_poll_abandons_it_and_run_returns(s3: MotoS3) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def slow_publish(namespace: str, event: dict[str, Any]) -> int:
            started.set()
            await asyncio.sleep(60)
            return 0

        cursors = MemoryCursors()
        src = source(manifest(s3), cursors=cursors, publish=slow_publish, poll_interval=0.05)
        task = asyncio.create_task(src.run())
        await until(lambda: cursors.puts)
        put(s3, "a.txt", b"a")
        await asyncio.wait_for(started.wait(), timeout=10)
        await asyncio.wait_for(src.stop(), timeout=5)
        assert task.done() and not task.cancelled()
        assert task.result() is None

    run(scenario)


def test_argo_minio_example_runs_against_any_s3_endpoint(s3: MotoS3, events_corpus: Path) -> None:
    doc = yaml.safe_load((events_corpus / "event-sources" / "minio.yaml").read_text())
    entry = doc["spec"]["minio"]["example"]
    entry["endpoint"], entry["bucket"]["name"] = s3.endpoint, BUCKET  # the example's MinIO is not here
    published = Published()
    src = source(doc, cursors=MemoryCursors(), publish=published)

    async def scenario() -> None:
        await src.poll_once()
        put(s3, "report.csv", b"1,2,3")
        await src.poll_once()
        delete(s3, "report.csv")
        await src.poll_once()

    run(scenario)
    data = [e["data"] for e in published.events]
    assert [gjson.get(d, "notification.0.eventName") for d in data] == [CREATED, REMOVED]
    # What the corpus sensors read (sensors/http-trigger.yaml, sensors/minio.yaml).
    assert {gjson.get(d, "notification.0.s3.bucket.name") for d in data} == {BUCKET}
    assert {gjson.get(d, "notification.0.s3.object.key") for d in data} == {"report.csv"}
