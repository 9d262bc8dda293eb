"""The S3 event source's pure core: what changed in a bucket between two listings, and the events for it.

The S3 event source (:mod:`engine.events.sources.s3`, Argo's ``minio`` type) watches a bucket by listing
it (ListObjectsV2) every few seconds and comparing the listing with the previous one, because that works
against every S3 endpoint: AWS S3 has no ListenBucketNotification and moto has no notifications at all.
This module is the pure part of that: the edge lists, stores and publishes; everything it decides comes
from here.

* A listing is a mapping ``key -> ObjectInfo`` (ETag, size, LastModified). :func:`diff` compares two of
  them: a key that is new, or whose ETag, size or LastModified differs, is ``s3:ObjectCreated:Put`` (an
  overwrite is a new object); a key that vanished is ``s3:ObjectRemoved:Delete``. Polling cannot tell a
  Put from a Post, a Copy or a multipart upload, nor see an object that came and went between two polls;
  every creation is reported as ``Put``. Changes come in a stable order: LastModified, then key.
* Which changes are wanted: the ``events`` list (``s3:ObjectCreated:*``, ``s3:ObjectCreated:Put``,
  ``s3:ObjectRemoved:*``, ``s3:ObjectRemoved:Delete``; empty means all), ``filter.prefix`` and
  ``filter.suffix``, and ``bucket.key`` (only that key). Other event names (``s3:ObjectCreated:Copy``...)
  are never produced; a list made only of such names is refused by :func:`wanted`.
* :func:`event_for` turns one change into an :class:`~engine.events.model.Event` whose data is Argo's
  minio payload, ``{"notification": [record], "metadata": {...}}`` (``metadata`` only when the source
  sets some), the record shaped like an S3/MinIO notification record. The object key in the record is the
  key itself, not URL-encoded as MinIO and AWS encode it.
* Event ids are a hash of where the event comes from and of the object generation it reports (bucket,
  key, ETag, size, LastModified, event name), so an event published again after a crash carries the same
  id and the bus stores it once.
* The durable cursor (:class:`Cursor`) is the last listing plus the batch of changes being published
  (written before publishing, cleared after), so that a restart republishes exactly an interrupted batch
  and then continues from the listing it was computed from. A listing (the objects under the watched
  prefix, before the suffix filter) holds at most :data:`MAX_OBJECTS` (100,000) objects; the edge
  refuses a larger one, so a cursor stays a few megabytes at most.

Pure: no I/O and no clock; the edge passes in the listings and the time it observed them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.errors import ExprError, StateError, StoreError, UnsupportedError
from engine.events.cloudevent import format_time
from engine.events.model import Event
from engine.expr import compile_expr

CREATED = "s3:ObjectCreated:Put"
REMOVED = "s3:ObjectRemoved:Delete"
SOURCE_TYPE = "minio"  # the CloudEvent type Argo gives this source
MAX_OBJECTS = 100_000
CURSOR_VERSION = 1

# Each event name a configuration may give, and which of the two observable changes it asks for.
_PATTERNS: Mapping[str, frozenset[str]] = {
    "s3:ObjectCreated:*": frozenset({CREATED}),
    CREATED: frozenset({CREATED}),
    "s3:ObjectRemoved:*": frozenset({REMOVED}),
    REMOVED: frozenset({REMOVED}),
}


# =============================================================================================== objects


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One generation of an object as a listing shows it; any difference means it was written again."""

    etag: str  # without quotes
    size: int
    last_modified: str  # RFC 3339 UTC with milliseconds (s3_time), so it sorts as text


def s3_time(t: datetime) -> str:
    """``t`` as S3 writes times in listings and notification records: ``2024-05-01T12:00:00.250Z``."""
    if t.tzinfo is None:
        raise ExprError(f"time {t.isoformat()} has no time zone")
    u = t.astimezone(UTC)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def object_info(*, etag: str, size: int, last_modified: datetime) -> ObjectInfo:
    """The :class:`ObjectInfo` of a listed object (its ETag with or without S3's quotes)."""
    return ObjectInfo(etag=etag.strip('"'), size=size, last_modified=s3_time(last_modified))


@dataclass(frozen=True, slots=True)
class Change:
    """One event to emit: ``info`` is the new generation (Created) or the one that vanished (Removed)."""

    event_name: str  # CREATED or REMOVED
    key: str
    info: ObjectInfo


# ================================================================================================ scope


@dataclass(frozen=True, slots=True)
class Scope:
    """Which objects one S3 event watches: a listing and a cursor belong to exactly one scope."""

    endpoint: str
    bucket: str
    prefix: str = ""
    suffix: str = ""
    key: str | None = None  # bucket.key: only this object

    @property
    def listing_prefix(self) -> str:
        """What to ask ListObjectsV2 for: the narrowest prefix every watched key starts with."""
        if self.key is not None:
            return self.key
        return self.prefix

    def covers(self, key: str) -> bool:
        return covers(key, prefix=self.prefix, suffix=self.suffix, only=self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "key": self.key,
        }


def covers(key: str, *, prefix: str = "", suffix: str = "", only: str | None = None) -> bool:
    """Whether ``key`` passes ``filter.prefix``, ``filter.suffix`` and ``bucket.key``."""
    if only is not None and key != only:
        return False
    return key.startswith(prefix) and key.endswith(suffix)


def wanted(events: Sequence[str]) -> frozenset[str]:
    """Which of CREATED and REMOVED an ``events`` list asks for (an empty list: both).

    Names this source can never produce (``s3:ObjectCreated:Copy``...) are skipped; a non-empty list of
    nothing but such names raises UnsupportedError, because the event could never fire.
    """
    if not events:
        return frozenset({CREATED, REMOVED})
    out: set[str] = set()
    for name in events:
        out |= _PATTERNS.get(name, frozenset())
    if not out:
        known = ", ".join(_PATTERNS)
        raise UnsupportedError(
            f"events {list(events)} cannot be observed by listing the bucket; use one of {known}"
        )
    return frozenset(out)


# ================================================================================================= diff


def diff(
    previous: Mapping[str, ObjectInfo],
    current: Mapping[str, ObjectInfo],
    *,
    events: Sequence[str] = (),
    prefix: str = "",
    suffix: str = "",
    key: str | None = None,
) -> list[Change]:
    """The wanted changes from ``previous`` to ``current``, ordered by LastModified, then key.

    Keys outside prefix/suffix/``key`` are ignored on both sides; ``events`` is as for :func:`wanted`.
    A removal sorts by the LastModified of the generation that vanished.
    """
    kinds = wanted(events)
    changes: list[Change] = []
    if CREATED in kinds:
        for k, info in current.items():
            if covers(k, prefix=prefix, suffix=suffix, only=key) and previous.get(k) != info:
                changes.append(Change(CREATED, k, info))
    if REMOVED in kinds:
        for k, info in previous.items():
            if k not in current and covers(k, prefix=prefix, suffix=suffix, only=key):
                changes.append(Change(REMOVED, k, info))
    changes.sort(key=lambda c: (c.info.last_modified, c.key, c.event_name))
    return changes


# ================================================================================================ events


def event_id(*, namespace: str, source_name: str, event_name: str, bucket: str, change: Change) -> str:
    """The event's id: 32 hex digits that only this object generation and event name produce."""
    i = change.info
    parts = [namespace, source_name, event_name, bucket, change.event_name, change.key, i.etag, i.size]
    digest = hashlib.sha256(json.dumps([*parts, i.last_modified], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:32]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _sequencer(t: datetime) -> str:
    # MinIO's sequencer: the event time in nanoseconds since the epoch, in upper-case hex.
    delta = t - _EPOCH
    return f"{(delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000:016X}"


def _parse_s3_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError as exc:
        raise ExprError(f"not an S3 time: {text!r}") from exc


def record(*, bucket: str, change: Change, region: str, origin: str, observed_at: datetime) -> dict[str, Any]:
    """One notification record for ``change``, shaped as S3 and MinIO write them.

    ``origin`` is the record's ``eventSource`` (``aws:s3`` or ``minio:s3``). A creation is dated by the
    object's LastModified; a removal by when the listing showed it gone. Removal records carry only the
    key and sequencer of the object, as S3's do.
    """
    if change.event_name == CREATED:
        when = _parse_s3_time(change.info.last_modified)
        obj: dict[str, Any] = {
            "key": change.key,
            "size": change.info.size,
            "eTag": change.info.etag,
            "sequencer": _sequencer(when),
        }
    else:
        when = observed_at.astimezone(UTC)
        obj = {"key": change.key, "sequencer": _sequencer(when)}
    return {
        "eventVersion": "2.0",
        "eventSource": origin,
        "awsRegion": region,
        "eventTime": s3_time(when),
        "eventName": change.event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def origin_for(endpoint: str) -> str:
    """The records' ``eventSource``: ``aws:s3`` for AWS endpoints, ``minio:s3`` for any other store."""
    host = endpoint.split(":", 1)[0].lower()
    return "aws:s3" if host == "amazonaws.com" or host.endswith(".amazonaws.com") else "minio:s3"


def event_for(
    *,
    namespace: str,
    source_name: str,
    event_name: str,
    bucket: str,
    change: Change,
    metadata: Mapping[str, str],
    region: str,
    origin: str,
    observed_at: datetime,
) -> Event:
    """The event for one change: Argo's minio payload, ``source`` the EventSource, ``subject`` the event.

    ``observed_at`` (the poll that saw the change) is the CloudEvent ``time``; it does not enter the id.
    """
    data: dict[str, Any] = {
        "notification": [
            record(bucket=bucket, change=change, region=region, origin=origin, observed_at=observed_at)
        ]
    }
    if metadata:
        data["metadata"] = dict(metadata)
    return Event(
        id=event_id(
            namespace=namespace, source_name=source_name, event_name=event_name, bucket=bucket, change=change
        ),
        source=source_name,
        type=SOURCE_TYPE,
        subject=event_name,
        time=format_time(observed_at),
        data=data,
    )


def passes_expression(expression: str, data: Mapping[str, Any]) -> bool:
    """``eventFilter.expression`` over the event data, top-level ``-`` in keys read as ``_`` (Argo's rule).

    True only for a boolean true; an expression that fails or yields anything else raises ExprError.
    """
    env = {str(k).replace("-", "_"): v for k, v in data.items()}
    result = compile_expr(expression).run(env)
    if not isinstance(result, bool):
        raise ExprError(f"must yield true or false, not {type(result).__name__}", expression=expression)
    return result


# ================================================================================================ cursor


@dataclass(frozen=True, slots=True)
class Cursor:
    """What a restart resumes from: the last listing, and the batch being published when it was taken.

    ``pending`` is non-empty only between writing the batch down and finishing publishing it;
    ``observed_at`` is that batch's poll time, so the republished events are the same events.
    """

    scope: Scope
    objects: Mapping[str, ObjectInfo]
    pending: tuple[Change, ...] = ()
    observed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.pending and self.observed_at is None:
            raise StateError("an S3 cursor with a pending batch needs the time the batch was observed")

    def settled(self) -> Cursor:
        """The cursor once its pending batch is on the bus."""
        return Cursor(self.scope, self.objects)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": CURSOR_VERSION,
            "scope": self.scope.to_json(),
            "objects": {k: [i.etag, i.size, i.last_modified] for k, i in self.objects.items()},
        }
        if self.pending:
            out["pending"] = {
                "observedAt": format_time(self.observed_at or _EPOCH),
                "changes": [_change_json(c) for c in self.pending],
            }
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], scope: Scope) -> Cursor | None:
        """The stored cursor, or None when it belongs to another scope (the watch was reconfigured).

        Raises StoreError for a value that is not a cursor this version wrote.
        """
        if raw.get("version") != CURSOR_VERSION:
            raise StoreError(f"S3 cursor version {raw.get('version')!r} is not {CURSOR_VERSION}")
        if raw.get("scope") != scope.to_json():
            return None
        objects = raw.get("objects")
        if not isinstance(objects, Mapping):
            raise StoreError("S3 cursor has no objects")
        try:
            listing = {str(k): _info(v) for k, v in objects.items()}
            pending: tuple[Change, ...] = ()
            observed_at: datetime | None = None
            batch = raw.get("pending")
            if batch:
                observed_at = datetime.fromisoformat(str(batch["observedAt"]))
                pending = tuple(_change(c) for c in batch["changes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"S3 cursor is malformed: {exc}") from exc
        return cls(scope, listing, pending, observed_at)


def _info(value: Any) -> ObjectInfo:
    etag, size, modified = value
    if not (isinstance(etag, str) and isinstance(size, int) and isinstance(modified, str)):
        raise TypeError(f"bad object entry {value!r}")
    return ObjectInfo(etag, size, modified)


def _change_json(c: Change) -> list[Any]:
    return [c.event_name, c.key, c.info.etag, c.info.size, c.info.last_modified]


def _change(value: Any) -> Change:
    name, key, *info = value
    if name not in (CREATED, REMOVED) or not isinstance(key, str):
        raise ValueError(f"bad pending change {value!r}")
    return Change(name, key, _info(info))


def listing(objects: Iterable[tuple[str, ObjectInfo]], scope: Scope) -> dict[str, ObjectInfo]:
    """The watched part of a bucket listing: the keys ``scope`` covers."""
    return {k: i for k, i in objects if scope.covers(k)}


__all__ = [
    "CREATED",
    "CURSOR_VERSION",
    "MAX_OBJECTS",
    "REMOVED",
    "SOURCE_TYPE",
    "Change",
    "Cursor",
    "ObjectInfo",
    "Scope",
    "covers",
    "diff",
    "event_for",
    "event_id",
    "listing",
    "object_info",
    "origin_for",
    "passes_expression",
    "record",
    "s3_time",
    "wanted",
]
