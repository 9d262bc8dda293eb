"""The S3 event source (Argo's ``minio`` type): polls one bucket and publishes object events to the bus.

A runtime that hosts EventSources (``sluice server``, ``sluice eventsource run``) makes one
:class:`S3Source` per ``spec.minio.<event>`` entry and awaits :meth:`S3Source.run` until it calls
:meth:`S3Source.stop`. It hands the source its ports: ``publish`` (the bus), a :class:`CursorStore`
(durable key-value storage, e.g. the bus's key-value store), ``secrets`` (Secret lookup for ``accessKey``
and ``secretKey``) and ``connect``, which opens a bucket for listing; the runtime passes
``engine.runtime.s3.open_bucket``, which this edge module may not import (runtimes sit above the events
layer).

Every ``poll_interval`` seconds (5 by default) the source lists the watched part of the bucket and
compares it with the listing in its cursor (:mod:`engine.events.s3watch` decides what changed and what
each event looks like). Works against any S3 endpoint (AWS, MinIO, moto). The objects under the watched
prefix (``bucket.key`` or ``filter.prefix``; the suffix is applied afterwards) may number at most
:data:`engine.events.s3watch.MAX_OBJECTS` (100,000): a larger listing fails the poll with a message
saying so, and the watch has to be narrowed. The cursor, stored under
``s3.<namespace>.<eventSource>.<event>``, makes restarts exact:

* first start (no cursor): the current listing is stored and nothing is emitted for objects that were
  already there, as Argo's listener only sees notifications sent after it started;
* each poll with changes first writes the new listing together with the batch of events it is about to
  publish, then publishes them in order (LastModified, then key), then writes the listing alone. A crash
  anywhere in between is resumed by publishing that batch again with the same event ids, which the bus
  stores once, then polling on from its listing: nothing is lost, nothing is on the bus twice;
* changes made while the source was down are found by the first poll after the restart;
* a cursor written for another endpoint, bucket, prefix, suffix or key (the watch was reconfigured) is
  replaced by a fresh listing, again without events; so is a cursor that cannot be read (logged).

A failed poll (unreachable endpoint, rejected credentials, a missing Secret, a bus or store error) is
logged and retried after 2, 4, 8... times ``poll_interval``, at most ``max_backoff`` (300 s) apart; the
delay resets once a poll succeeds; :attr:`S3Source.last_error` holds the message meanwhile. Secrets are read
again for every new connection, so fixing a Secret needs no restart. Without ``accessKey``/``secretKey``
the S3 client's own credential chain applies (environment, instance profile). Not provided:
``caCertificate`` (a custom certificate authority), refused at construction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.errors import (
    ExprError,
    Problem,
    ProviderError,
    SluiceError,
    SpecError,
    StoreError,
    UnsupportedError,
)
from engine.events import s3watch
from engine.events.cloudevent import build, to_bus
from engine.events.model import Event
from engine.events.s3watch import Change, Cursor, ObjectInfo, Scope
from engine.events.sources.ports import CursorStore, Publish, SecretLookup, Sleep
from engine.expr import compile_expr
from engine.spec.events import EventSource, S3EventSource, SecretKeySelector

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_ENDPOINT = "s3.amazonaws.com"
DEFAULT_REGION = "us-east-1"


# ================================================================================================= ports


class ListedObject(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def etag(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def last_modified(self) -> datetime: ...


class BucketLister(Protocol):
    """One bucket; ``list_objects`` blocks (the source runs it in a worker thread)."""

    def list_objects(self, prefix: str = "", *, limit: int | None = None) -> Sequence[ListedObject]:
        """Objects whose keys start with ``prefix``; more than ``limit`` raises ProviderError."""
        ...


class Connect(Protocol):
    """Opens a bucket: ``engine.runtime.s3.open_bucket`` has this shape."""

    def __call__(
        self,
        *,
        bucket: str,
        endpoint: str,
        insecure: bool,
        region: str | None,
        access_key: str | None,
        secret_key: str | None,
    ) -> BucketLister: ...


def cursor_key(namespace: str, source_name: str, event_name: str) -> str:
    """Where the cursor of one S3 event is stored."""
    return f"s3.{namespace}.{source_name}.{event_name}"


# ================================================================================================ source


class S3Source:
    """Watches one ``spec.minio.<event_name>`` entry of an EventSource (see the module docstring)."""

    def __init__(
        self,
        *,
        namespace: str,
        event_source: EventSource,
        event_name: str,
        spec: S3EventSource,
        publish: Publish,
        cursors: CursorStore,
        secrets: SecretLookup,
        connect: Connect,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        name = event_source.metadata.name
        if not name:
            raise SpecError([Problem("metadata.name", "required")], file="EventSource")
        path = f"spec.minio.{event_name}"
        where = f"EventSource {namespace}/{name}"
        if spec.ca_certificate is not None:
            raise UnsupportedError(
                f"{where}: {path}.caCertificate: a custom certificate authority is not supported"
            )
        endpoint = spec.endpoint or DEFAULT_ENDPOINT
        if "://" in endpoint or "/" in endpoint:
            why = "give host[:port] without a scheme or path (insecure: true for http)"
            raise SpecError([Problem(f"{path}.endpoint", why)], file=where)
        try:
            s3watch.wanted(spec.events)
        except UnsupportedError as exc:
            raise UnsupportedError(f"{where}: {path}.events: {exc}") from exc
        expression = spec.event_filter.expression if spec.event_filter else None
        if expression:
            try:
                compile_expr(expression)
            except ExprError as exc:
                raise SpecError([Problem(f"{path}.eventFilter.expression", str(exc))], file=where) from exc
        if poll_interval <= 0 or max_backoff < poll_interval:
            raise ValueError("poll_interval must be positive and max_backoff at least poll_interval")

        self.namespace = namespace
        self.source_name = name
        self.event_name = event_name
        self.spec = spec
        self.scope = Scope(
            endpoint=endpoint,
            bucket=spec.bucket.name,
            prefix=(spec.filter.prefix or "") if spec.filter else "",
            suffix=(spec.filter.suffix or "") if spec.filter else "",
            key=spec.bucket.key or None,
        )
        self.region = spec.region or DEFAULT_REGION
        self.cursor_key = cursor_key(namespace, name, event_name)
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        #: The message of the last failed poll; None once a poll succeeds.
        self.last_error: str | None = None
        #: Polls failed in a row.
        self.failures = 0
        self._where = f"{where} event {event_name!r}"
        self._expression = expression
        self._origin = s3watch.origin_for(endpoint)
        self._publish = publish
        self._cursors = cursors
        self._secrets = secrets
        self._connect = connect
        self._sleep = sleep
        self._now = now
        self._bucket: BucketLister | None = None
        self._cursor: Cursor | None = None  # what the store holds, once read or written by this process
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._polling = False

    # --------------------------------------------------------------------------------------- running

    async def run(self) -> None:
        """Poll until :meth:`stop`; a failed poll is retried with exponential backoff, never raised."""
        if self._task is not None:
            raise RuntimeError(f"{self._where} is already running")
        self._task = asyncio.current_task()
        self._stopped.clear()
        try:
            while not self._stopping.is_set():
                try:
                    self._polling = True
                    await self.poll_once()
                    self.failures, self.last_error = 0, None
                    delay = self.poll_interval
                except asyncio.CancelledError:
                    if self._stopping.is_set() and self._task is not None:
                        self._task.uncancel()
                        return
                    raise
                except Exception as exc:
                    self.failures += 1
                    self.last_error = str(exc)
                    delay = min(self.poll_interval * 2**self.failures, self.max_backoff)
                    log.warning(
                        "%s: poll failed (%d in a row), retrying in %.3g s: %s",
                        self._where,
                        self.failures,
                        delay,
                        exc,
                        exc_info=not isinstance(exc, SluiceError),
                    )
                finally:
                    self._polling = False
                if not self._stopping.is_set():
                    await self._wait(delay)
        finally:
            self._task = None
            self._stopped.set()

    async def stop(self) -> None:
        """Stop :meth:`run`: a wait ends at once, a poll in progress is abandoned (its cursor makes that
        safe). Returns when :meth:`run` has returned."""
        self._stopping.set()
        task = self._task
        if task is None or task is asyncio.current_task():
            return
        if self._polling:
            task.cancel()
        await self._stopped.wait()

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, waking early when the source is stopped."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeper, stopper):
                waiter.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)

    # --------------------------------------------------------------------------------------- polling

    async def poll_once(self) -> int:
        """One poll: finish an interrupted batch, list, publish the changes; returns how many events
        were published. Raises ProviderError, StoreError or whatever ``publish`` raised."""
        try:
            return await self._poll()
        except BaseException:
            # The store is the truth after a failure: reread it, and reconnect with fresh Secrets.
            self._cursor = None
            self._bucket = None
            raise

    async def _poll(self) -> int:
        published = 0
        cursor = self._cursor or await self._load()
        if cursor is not None and cursor.pending:
            assert cursor.observed_at is not None  # Cursor guarantees it
            published += await self._publish_batch(cursor.pending, cursor.observed_at)
            cursor = await self._save(cursor.settled())
        current = await self._list()
        if cursor is None:
            await self._save(Cursor(self.scope, current))
            log.info("%s: watching %d existing objects", self._where, len(current))
            return published
        if current == cursor.objects:
            return published
        observed_at = self._now()
        changes = s3watch.diff(
            cursor.objects,
            current,
            events=self.spec.events,
            prefix=self.scope.prefix,
            suffix=self.scope.suffix,
            key=self.scope.key,
        )
        batch = tuple(c for c in changes if self._accepts(c, observed_at))
        if batch:
            await self._save(Cursor(self.scope, current, batch, observed_at))
            published += await self._publish_batch(batch, observed_at)
        await self._save(Cursor(self.scope, current))
        return published

    async def _load(self) -> Cursor | None:
        raw = await self._cursors.get(self.cursor_key)
        if raw is None:
            return None
        try:
            cursor = Cursor.from_json(raw, self.scope)
        except StoreError as exc:
            log.warning("%s: ignoring the stored cursor and listing afresh: %s", self._where, exc)
            return None
        if cursor is None:
            log.info("%s: the watch was reconfigured; listing afresh", self._where)
        return cursor

    async def _save(self, cursor: Cursor) -> Cursor:
        await self._cursors.put(self.cursor_key, cursor.to_json())
        self._cursor = cursor
        return cursor

    async def _list(self) -> dict[str, ObjectInfo]:
        bucket = self._bucket or self._open()
        try:
            objects = await asyncio.to_thread(
                bucket.list_objects, self.scope.listing_prefix, limit=s3watch.MAX_OBJECTS
            )
        except ProviderError as exc:
            raise ProviderError(f"{self._where}: {exc}") from exc
        self._bucket = bucket
        return s3watch.listing(
            (
                (o.key, s3watch.object_info(etag=o.etag, size=o.size, last_modified=o.last_modified))
                for o in objects
            ),
            self.scope,
        )

    def _open(self) -> BucketLister:
        return self._connect(
            bucket=self.scope.bucket,
            endpoint=self.scope.endpoint,
            insecure=bool(self.spec.insecure),
            region=self.spec.region,
            access_key=self._secret_value(self.spec.access_key, "accessKey"),
            secret_key=self._secret_value(self.spec.secret_key, "secretKey"),
        )

    def _secret_value(self, selector: SecretKeySelector | None, field: str) -> str | None:
        if selector is None:
            return None
        if not selector.name:
            raise ProviderError(f"{self._where}: {field} names no Secret")
        try:
            data = self._secrets(self.namespace, selector.name)
        except SluiceError as exc:
            raise ProviderError(
                f"{self._where}: cannot read Secret {selector.name!r} ({field}): {exc}"
            ) from exc
        value = (data or {}).get(selector.key)
        if value:
            return value
        if selector.optional:
            return None
        what = "not found" if data is None else f"has no key {selector.key!r}"
        raise ProviderError(f"{self._where}: Secret {self.namespace}/{selector.name} ({field}) {what}")

    def _event_model(self, change: Change, observed_at: datetime) -> Event:
        return s3watch.event_for(
            namespace=self.namespace,
            source_name=self.source_name,
            event_name=self.event_name,
            bucket=self.scope.bucket,
            change=change,
            metadata=self.spec.metadata,
            region=self.region,
            origin=self._origin,
            observed_at=observed_at,
        )

    def _event(self, change: Change, observed_at: datetime) -> dict[str, Any]:
        """The event as the bus takes it, built through the CloudEvents SDK."""
        event = self._event_model(change, observed_at)
        ce = build(
            id=event.id,
            source=event.source,
            type=event.type,
            subject=event.subject,
            time=observed_at,
            data=event.data,
        )
        return to_bus(ce)

    def _accepts(self, change: Change, observed_at: datetime) -> bool:
        if not self._expression:
            return True
        data = self._event_model(change, observed_at).data
        try:
            return s3watch.passes_expression(self._expression, data)
        except ExprError as exc:
            # Argo drops an event its filter cannot evaluate; the poll goes on.
            log.warning("%s: dropping the event for %r: eventFilter: %s", self._where, change.key, exc)
            return False

    async def _publish_batch(self, batch: Sequence[Change], observed_at: datetime) -> int:
        for change in batch:
            await self._publish(self.namespace, self._event(change, observed_at))
        if batch:
            log.info("%s: published %d events", self._where, len(batch))
        return len(batch)


__all__ = [
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_POLL_INTERVAL",
    "BucketLister",
    "Connect",
    "CursorStore",
    "ListedObject",
    "Publish",
    "S3Source",
    "SecretLookup",
    "Sleep",
    "cursor_key",
]
