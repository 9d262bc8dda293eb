"""The event bus on NATS JetStream, for clusters: :class:`JetStreamBus` implements
:class:`engine.runtime.base.EventBus` the way Argo Events' JetStream event bus works.

On a cluster, the processes hosting event sources and sensors (``sluice sensor run``) build one with
the server's URL and ``await bus.open()``; the sensor runner (:mod:`engine.runtime.sensors`) consumes
through it as it does through the embedded bus. Shared by both runtimes, it imports neither. The
record types are in :mod:`engine.runtime.busmodel`.

The stream. One stream (``sluice-events``) holds every event, under the subject
``<prefix>.<namespace>.<eventSourceName>.<eventName>`` (prefix ``sluice``). A subject token cannot
hold ``.``, ``*``, ``>`` or whitespace, so those characters, ``%`` itself, control characters and
everything outside printable ASCII are percent-encoded (UTF-8 bytes, ``%2E`` for a dot): names that
Kubernetes allows (DNS labels and subdomains) and free-form event names all fit, ``webhook.a``
stays apart from ``webhook`` + ``a``, and usual names read as they are. The payload is the event's
JSON; the namespace, source and name are read back from the subject. ``open`` creates the stream or
brings its limits up to date: limits retention with file storage, ``max_age`` (72 h) and ``max_msgs``
(1,000,000) as in Argo's default stream, which the server enforces by itself as messages arrive, so
:meth:`~JetStreamBus.compact` has nothing to do.

Duplicates. Each publish carries ``Nats-Msg-Id: <namespace>/<source>/<id>`` (each part
percent-encoded), and JetStream stores a message whose id it saw within the stream's duplicate window
(``duplicates_window``, 5 minutes as in Argo) once, answering the first copy's sequence number.
Unlike the embedded bus, which refuses a duplicate for as long as the first copy is retained, a
republish after the window is stored again; sources that retry within minutes (a webhook client, a
calendar catching up after a restart) are covered, and the sensors' own dedupe by event id (see
below) covers a redelivery.

Consumers are durable pull consumers with explicit acks, one per sensor trigger. A new one starts
after the last event on the stream (DeliverNew, spelt as a start sequence so that the consumer
records where it began) or at the first with ``deliver_all``. Declaring one again updates its
``ack_wait`` and filters and keeps its position. nats-server 2.9 accepts a changed filter subject on
update and then delivers nothing more, so a consumer whose filter subject changes is replaced by one
that starts at its first unacknowledged event (the start is written to the key-value bucket before
the delete, so a crash in between loses no position); what it had acked beyond that is delivered
again, which the sensors' dedupe absorbs. Consumer names become JetStream names of
``[A-Za-z0-9_-]``: a name already of that form (up to 64 characters) is used as it is, any other is
slugged and suffixed with a hash of the original. nats-server 2.9 also gives a consumer one filter
subject, so a consumer of several :class:`SubjectFilter` gets the narrowest subject covering them all
(each of the three tokens kept where every filter agrees on it, ``*`` or a trailing ``>`` elsewhere)
and :meth:`~JetStreamBus.fetch` acknowledges and drops, on the client, what none of its filters
matches. This keeps one consumer, one sequence order and JetStream's own ack bookkeeping per trigger,
at the price of carrying non-matching events of the covered subjects over the wire; several
consumers merged by sequence number would deliver an event that two overlapping filters match twice.
The filters are kept in the consumer's description (in the key-value bucket when they do not fit
there), so a bus that did not declare a consumer can still fetch from it.

Fetching sends pull requests of its own rather than nats-py's ``fetch``, to answer "up to ``limit``
events, as soon as there is one": a no-wait request for ``limit`` takes what is due now; when nothing
is, a request for one event waits up to ``timeout`` and, once it brings one, a second no-wait request
gathers the rest. Each consumer has its own inbox, each request its own reply subject, so a status
left over from an earlier request is told apart; an event a request delivers after its fetch gave up
waits in the inbox for the next fetch. JetStream redelivers what is not acknowledged within the
consumer's ``ack_wait``, including, after a process restarts, what the previous process held: there
is no "due at once on reopening" as on the embedded bus, the deliveries come back once ``ack_wait``
passes. The bus keeps the nats message of every delivery it handed out until it is acked or naked;
``ack`` of a sequence number this bus does not hold (acked already, or delivered to another process)
returns False and applies nothing. Acks are double acks (``ack_sync``): the call returns once the
server has processed them.

The key-value store is one JetStream KV bucket per bus (``<stream>-state``, one revision per key,
created without direct get, so that a sensor restoring its state reads it from the stream's leader
rather than from a replica that may lag). A key is
``<bucket>.<key>``, each part escaped to KV's alphabet: ``A-Z a-z 0-9 - _ /`` stay, any other
character becomes ``=`` and two hex digits per UTF-8 byte, and an empty part is a lone ``=``.

Ack and state are two writes here, not one transaction. ``ack_batch`` writes the key-value updates
first and acknowledges the events after them. The sensor runner acts before it calls ``ack_batch``,
so a crash (of the process, or of the network between the two writes) leaves one of three states:
nothing written (the batch is redelivered against the old state, yields the same firings with the
same keys, and each action, idempotent by its firing key, acts once); state written without the acks
(the batch is redelivered against the new state, which already lists those event ids among the ones
it consumed, so :func:`engine.events.sensor.on_event` takes each for a duplicate and nothing fires
or changes twice); or both. The other order would lose events: acks without the state drop what the
batch contributed to the trigger's held events. The second case relies on the state's memory of
consumed ids (``SEEN_WINDOW``, 256 ids, twice the runner's batch): redeliveries come after
``ack_wait``, and if a trigger consumed more than that many newer events in the meantime, an old
event would count again. A server killed with SIGKILL can likewise lose an ack it confirmed less than
about a second before, which lands in the same second case.

A bus serves the event loop that opened it. :meth:`~JetStreamBus.close` lets publishes, acks and
key-value writes already under way finish, ends waiting fetches with StoreError, then closes the
connection. Errors: an unreachable or failing server is a :class:`StoreError`, an event or value the
bus cannot take a :class:`SpecError`, a consumer that does not exist a :class:`ReferenceError_`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from engine.errors import Problem, ReferenceError_, SpecError, StoreError
from engine.runtime.busmodel import (
    JSON_ENCODER,
    BusRecord,
    ConsumerInfo,
    Delivery,
    KVUpdate,
    SubjectFilter,
    check_consumer,
    encode_event,
)

if TYPE_CHECKING:
    from engine.runtime.base import EventBus

log = logging.getLogger(__name__)

DEFAULT_STREAM = "sluice-events"
DEFAULT_PREFIX = "sluice"
DEFAULT_MAX_AGE = 72 * 3600.0  # Argo Events' default stream limits
DEFAULT_MAX_MSGS = 1_000_000
DEFAULT_DUPLICATES_WINDOW = 300.0
DEFAULT_MAX_EVENT_BYTES = 1 << 20  # NATS' default max_payload
DESCRIPTION_LIMIT = 4096  # nats-server refuses longer consumer descriptions

_JSON = JSON_ENCODER
_NAME_OK = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STREAM_NAME_OK = re.compile(r"[A-Za-z0-9_-]{1,200}")
_KV_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/")
_CLOSED = object()  # put in a consumer's inbox queue to end a waiting fetch when the bus closes
_DELETED = object()  # ... and when this bus deletes the consumer
_END = object()  # the status that ends the pull request being read
_SKIP = object()  # a status of an earlier request, or a heartbeat
# A KV key part never starts with "==" (the escape is "=" and two hex digits), so this key is ours.
_FILTERS_KEY = "==consumer-filters.{}"
_RESTART_KEY = "==consumer-restart.{}"


# ============================================================================================== names


def subject_token(text: str) -> str:
    """``text`` as one subject token: ``.``, ``*``, ``>``, ``%``, whitespace, control characters and
    non-ASCII percent-encoded (UTF-8), everything else kept."""
    out = []
    for ch in text:
        if "!" <= ch <= "~" and ch not in ".*>%":
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    return "".join(out)


def _untoken(token: str) -> str:
    return urllib.parse.unquote(token, errors="strict")


def kv_token(text: str) -> str:
    """``text`` as one KV key part: letters, digits, ``-``, ``_`` and ``/`` kept, any other character
    ``=XX`` per UTF-8 byte; the empty string is ``=``."""
    if not text:
        return "="
    out = []
    for ch in text:
        if ch in _KV_KEEP:
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode())
    return "".join(out)


def _kv_untoken(token: str) -> str:
    if token == "=":
        return ""
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode()


def consumer_id(name: str) -> str:
    """The JetStream durable name of consumer ``name`` (see the module docstring)."""
    if _NAME_OK.fullmatch(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "consumer"
    return f"{slug}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def covering_filter(filters: Sequence[SubjectFilter]) -> SubjectFilter:
    """The narrowest filter matching everything any of ``filters`` matches (token by token)."""
    parts: list[str | None] = []
    for values in zip(*((f.namespace, f.event_source, f.event_name) for f in filters), strict=True):
        distinct = set(values)
        parts.append(distinct.pop() if len(distinct) == 1 else None)
    return SubjectFilter(*parts)


def _filters_to_json(filters: Sequence[SubjectFilter]) -> list[list[str | None]]:
    return [[f.namespace, f.event_source, f.event_name] for f in filters]


def _filters_from_json(raw: Any) -> tuple[SubjectFilter, ...]:
    return tuple(SubjectFilter(*parts) for parts in raw)


def _encode_event(namespace: str, event: Mapping[str, Any]) -> tuple[str, str, str, bytes]:
    """:func:`encode_event`, the JSON as bytes."""
    source, subject, event_id, text = encode_event(namespace, event)
    return source, subject, event_id, text.encode()


def _encode_value(bucket: str, key: str, value: Mapping[str, Any]) -> bytes:
    try:
        return _JSON.encode(dict(value)).encode()
    except (TypeError, ValueError) as exc:
        raise SpecError([Problem(f"kv.{bucket}.{key}", f"is not JSON-serializable: {exc}")]) from exc


def _redact(url: str) -> str:
    """``url`` without a user or password in it (for error messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ============================================================================================== the bus


@dataclass
class _Consumer:
    """What this bus knows of one durable consumer: its filters, inbox and the deliveries it holds."""

    name: str
    durable: str
    filters: tuple[SubjectFilter, ...]
    inbox: str
    queue: asyncio.Queue[Any]
    sub: Subscription | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requests: int = 0
    held: dict[int, Msg] = field(default_factory=dict)  # stream seq -> the latest delivery of it


class JetStreamBus:
    """:class:`engine.runtime.base.EventBus` on a NATS JetStream server (see the module docstring).

    ``url`` is a ``nats://`` URL (or several, for a cluster); ``credentials`` a ``.creds`` file,
    ``token``/``user``/``password`` the other ways a server authenticates, ``tls`` a client context.
    ``max_age``/``max_msgs`` (None: unlimited), ``duplicates_window`` and ``replicas`` configure the
    stream (and ``replicas`` the key-value bucket) when :meth:`open` creates or updates them.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_PREFIX,
        kv_bucket: str | None = None,
        max_age: float | None = DEFAULT_MAX_AGE,
        max_msgs: int | None = DEFAULT_MAX_MSGS,
        duplicates_window: float = DEFAULT_DUPLICATES_WINDOW,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        replicas: int = 1,
        credentials: str | None = None,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        client_name: str = "sluicegate",
    ) -> None:
        self.servers = [url] if isinstance(url, str) else list(url)
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.kv_bucket = kv_bucket or f"{stream}-state"
        self.max_age = max_age
        self.max_msgs = max_msgs
        self.duplicates_window = duplicates_window
        self.max_event_bytes = max_event_bytes
        self.replicas = replicas
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        problems = []
        if not self.servers:
            problems.append(Problem("url", "at least one server URL is required"))
        for attr, value in (("stream", stream), ("kvBucket", self.kv_bucket)):
            if not _STREAM_NAME_OK.fullmatch(value):
                problems.append(Problem(attr, f"{value!r} is not a name of letters, digits, - and _"))
        if not all(_NAME_OK.fullmatch(t) for t in subject_prefix.split(".")):
            problems.append(
                Problem("subjectPrefix", f"{subject_prefix!r} is not dotted tokens of [A-Za-z0-9_-]")
            )
        if duplicates_window <= 0:
            problems.append(Problem("duplicatesWindow", "must be positive"))
        if problems:
            raise SpecError(problems)
        self._prefix_tokens = len(subject_prefix.split("."))
        self._connect_options: dict[str, Any] = {
            "user_credentials": credentials,
            "token": token,
            "user": user,
            "password": password,
            "tls": tls,
            "name": client_name,
        }
        self._where = ", ".join(_redact(s) for s in self.servers)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._consumers: dict[str, _Consumer] = {}
        self._closed = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- connection ------------------------------------------------------------------------------------

    async def open(self) -> JetStreamBus:
        """Connect, then create the stream and the key-value bucket or bring their settings up to date.
        Raises StoreError when the server cannot be reached or refuses."""
        if self._nc is not None:
            return self
        if self._closed:
            raise StoreError(f"JetStream event bus at {self._where} is closed")
        nc = Client()
        try:
            # Retried for connect_timeout as a whole; once connected, the client reconnects for ever.
            await asyncio.wait_for(
                nc.connect(
                    servers=self.servers,
                    connect_timeout=max(1, round(self.connect_timeout)),
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **{k: v for k, v in self._connect_options.items() if v is not None},
                ),
                self.connect_timeout,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            raise StoreError(f"cannot connect to NATS at {self._where}: {_describe(exc)}") from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=self.request_timeout)
        try:
            await self._ensure_stream()
            self._kv = await self._ensure_bucket()
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._nc = self._js = None
            with contextlib.suppress(Exception):
                await nc.close()
            raise StoreError(
                f"JetStream at {self._where}: cannot set up stream {self.stream}: {_describe(exc)}"
            ) from exc
        except BaseException:
            self._nc = self._js = None
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        return self

    async def __aenter__(self) -> JetStreamBus:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS at %s: %s", self._where, _describe(exc))

    async def _on_disconnected(self) -> None:
        if not self._closed:
            log.warning("NATS at %s: disconnected; reconnecting", self._where)

    async def _on_reconnected(self) -> None:
        log.info("NATS at %s: reconnected", self._where)

    def _stream_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.stream,
            description="Sluicegate events",
            subjects=[f"{self.subject_prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=self.max_age or 0,
            max_msgs=-1 if self.max_msgs is None else self.max_msgs,
            duplicate_window=self.duplicates_window,
            num_replicas=self.replicas,
        )

    async def _ensure_stream(self) -> None:
        js = self._jet()
        want = self._stream_config()
        try:
            have = (await js.stream_info(self.stream)).config
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(want)
                return
            except nats.js.errors.BadRequestError:
                # Another process created it first; compare with what it made.
                have = (await js.stream_info(self.stream)).config
        if (
            have.subjects != want.subjects
            or (have.max_age or 0) != want.max_age
            or (have.max_msgs if have.max_msgs is not None else -1) != want.max_msgs
            or have.duplicate_window != want.duplicate_window
            or (have.num_replicas or 1) != want.num_replicas
        ):
            log.info("JetStream stream %s: updating its limits", self.stream)
            await js.update_stream(want)

    async def _ensure_bucket(self) -> KeyValue:
        js = self._jet()
        try:
            return await js.key_value(self.kv_bucket)
        except nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(
                bucket=self.kv_bucket,
                description="Sluicegate sensor state",
                history=1,
                storage=api.StorageType.FILE,
                replicas=self.replicas,
            )

    def _jet(self) -> JetStreamContext:
        if self._js is None:
            raise StoreError(f"JetStream event bus at {self._where} is not open")
        return self._js

    def _conn(self) -> Client:
        if self._nc is None:
            raise StoreError(f"JetStream event bus at {self._where} is not open")
        return self._nc

    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise StoreError(f"JetStream event bus at {self._where} is not open")
        return self._kv

    @contextlib.asynccontextmanager
    async def _op(self, what: str) -> AsyncIterator[None]:
        """Run one operation: refused once closed, counted so close can wait for it, NATS errors mapped."""
        if self._closed:
            raise StoreError(f"JetStream event bus at {self._where} is closed")
        self._conn()
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise StoreError(f"JetStream at {self._where}: {what}: {_describe(exc)}") from exc
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    # --- subjects --------------------------------------------------------------------------------------

    def _subject(self, namespace: str, source: str, name: str) -> str:
        return ".".join(
            [self.subject_prefix, subject_token(namespace), subject_token(source), subject_token(name)]
        )

    def _filter_subject(self, f: SubjectFilter) -> str:
        escaped = SubjectFilter(
            *(None if p is None else subject_token(p) for p in (f.namespace, f.event_source, f.event_name))
        )
        return f"{self.subject_prefix}.{escaped.key()}"

    def _parse_subject(self, subject: str) -> tuple[str, str, str] | None:
        tokens = subject.split(".")
        if len(tokens) != self._prefix_tokens + 3:
            return None
        try:
            ns, source, name = (_untoken(t) for t in tokens[self._prefix_tokens :])
        except UnicodeDecodeError:
            return None
        return ns, source, name

    # --- publishing ------------------------------------------------------------------------------------

    async def publish(self, namespace: str, event: Mapping[str, Any]) -> int:
        """Store ``event`` and return its stream sequence number; a duplicate within the duplicate window
        gets the first copy's number. SpecError for an event the bus cannot take, StoreError when the
        server did not confirm the write."""
        source, name, event_id, data = _encode_event(namespace, event)
        msg_id = "/".join(urllib.parse.quote(p, safe="") for p in (namespace, source, event_id))
        headers = {"Nats-Msg-Id": msg_id}
        async with self._op("publish"):
            # Headers count towards the server's max_payload (NATS/1.0 line, two headers, blank line).
            overhead = 10 + len(f"Nats-Msg-Id: {msg_id}\r\nNats-Expected-Stream: {self.stream}\r\n\r\n")
            limit = min(self.max_event_bytes, self._conn().max_payload - overhead)
            if len(data) > limit:
                raise SpecError(
                    [Problem("event", f"is {len(data)} bytes, more than the bus takes ({limit})")]
                )
            ack = await self._jet().publish(
                self._subject(namespace, source, name), data, headers=headers, stream=self.stream
            )
            return int(ack.seq)

    # --- consumers -------------------------------------------------------------------------------------

    async def consumer(
        self,
        name: str,
        filters: Sequence[SubjectFilter],
        *,
        deliver_all: bool = False,
        ack_wait: float = 30.0,
    ) -> ConsumerInfo:
        check_consumer(name, filters, ack_wait)
        filters = tuple(filters)
        durable = consumer_id(name)
        subject = self._filter_subject(covering_filter(filters))
        async with self._op(f"declare consumer {name!r}"):
            js = self._jet()
            kv = self._bucket()
            try:
                existing: api.ConsumerInfo | None = await js.consumer_info(self.stream, durable)
            except nats.js.errors.NotFoundError:
                existing = None
            description = _JSON.encode({"name": name, "filters": _filters_to_json(filters)})
            if len(description.encode()) > DESCRIPTION_LIMIT:
                await kv.put(_FILTERS_KEY.format(durable), description.encode())
                description = _JSON.encode({"name": name[:1000], "filters": "kv"})
            created = existing is None
            restart = _RESTART_KEY.format(durable)
            if existing is not None and existing.config.filter_subject != subject:
                # nats-server 2.9 takes a new filter subject on update and then delivers nothing more:
                # replace the consumer, starting at its first unacknowledged event. The start is
                # written down first, so a crash between the delete and the create loses no position.
                floor = int(existing.ack_floor.stream_seq or 0) if existing.ack_floor else 0
                resume = max(int(existing.config.opt_start_seq or 1), floor + 1)
                await kv.put(restart, _JSON.encode({"start": resume}).encode())
                await js.delete_consumer(self.stream, durable)
                existing = None
            if existing is None:
                resumed = await self._restart_point(restart)
                begin = resumed
                if begin is None and not deliver_all:
                    # DeliverNew spelt as a start sequence, so that a replacement knows where it began.
                    begin = int((await js.stream_info(self.stream)).state.last_seq or 0) + 1
                config = api.ConsumerConfig(
                    durable_name=durable,
                    description=description,
                    deliver_policy=api.DeliverPolicy.ALL
                    if begin is None
                    else api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=begin,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=float(ack_wait),
                    max_deliver=-1,
                    filter_subject=subject,
                )
                info = await js.add_consumer(self.stream, config)
                if resumed is not None:
                    await kv.purge(restart)
            else:
                info = existing
                if existing.config.ack_wait != float(ack_wait) or existing.config.description != description:
                    config = existing.config
                    config.ack_wait = float(ack_wait)
                    config.description = description
                    info = await js.add_consumer(self.stream, config)
            state = self._consumers.get(name)
            if state is None:
                await self._attach(name, durable, filters)
            else:
                state.filters = filters
            return ConsumerInfo(
                name=name,
                filters=filters,
                ack_wait=float(ack_wait),
                delivered_seq=int(info.delivered.stream_seq or 0) if info.delivered else 0,
                ack_pending=int(info.num_ack_pending or 0),
                created=created,
            )

    async def _restart_point(self, key: str) -> int | None:
        """Where a consumer being replaced is to start, when a replacement was cut short."""
        try:
            entry = await self._bucket().get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return int(json.loads(entry.value or b"{}")["start"])

    async def _attach(self, name: str, durable: str, filters: tuple[SubjectFilter, ...]) -> _Consumer:
        if self._closed:  # close() has already ended the waiting fetches; none may start now
            raise StoreError(f"JetStream event bus at {self._where} is closed")
        nc = self._conn()
        state = _Consumer(name, durable, filters, inbox=nc.new_inbox() + ".", queue=asyncio.Queue())

        async def deliver(msg: Msg) -> None:
            state.queue.put_nowait(msg)

        # Registered at once so a concurrent call finds it; fetches wait on the lock for the inbox.
        self._consumers[name] = state
        async with state.lock:
            try:
                state.sub = await nc.subscribe(state.inbox + "*", cb=deliver)
            except BaseException:
                self._consumers.pop(name, None)
                raise
        return state

    async def _known(self, name: str) -> _Consumer:
        """This bus's record of consumer ``name``, loaded from the server when another bus declared it."""
        state = self._consumers.get(name)
        if state is not None:
            return state
        durable = consumer_id(name)
        try:
            info = await self._jet().consumer_info(self.stream, durable)
        except nats.js.errors.NotFoundError:
            raise ReferenceError_(f"no event bus consumer named {name!r}") from None
        try:
            described = json.loads(info.config.description or "")
            raw = described["filters"]
            if raw == "kv":
                entry = await self._bucket().get(_FILTERS_KEY.format(durable))
                raw = json.loads(entry.value or b"")["filters"]
            filters = _filters_from_json(raw)
        except (ValueError, KeyError, TypeError, nats.js.errors.KeyNotFoundError):
            raise ReferenceError_(
                f"JetStream consumer {durable} was not created by a Sluicegate bus"
            ) from None
        state = self._consumers.get(name)  # declared meanwhile by a concurrent call
        return state if state is not None else await self._attach(name, durable, filters)

    async def delete_consumer(self, name: str) -> bool:
        durable = consumer_id(name)
        async with self._op(f"delete consumer {name!r}"):
            state = self._consumers.pop(name, None)
            if state is not None:
                state.queue.put_nowait(_DELETED)
                if state.sub is not None:
                    await state.sub.unsubscribe()
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await self._bucket().get(_FILTERS_KEY.format(durable))
                await self._bucket().purge(_FILTERS_KEY.format(durable))
            try:
                return bool(await self._jet().delete_consumer(self.stream, durable))
            except nats.js.errors.NotFoundError:
                return False

    # --- fetching --------------------------------------------------------------------------------------

    async def fetch(self, consumer: str, *, limit: int = 1, timeout: float = 0.0) -> list[Delivery]:
        """Up to ``limit`` events (redeliveries first, then new ones), as soon as there is one; an empty
        list once ``timeout`` seconds passed without any. ReferenceError_ for an unknown consumer."""
        if limit < 1:
            raise SpecError([Problem("fetch.limit", f"must be at least 1, not {limit}")])
        async with self._op(f"fetch from {consumer!r}"):
            state = await self._known(consumer)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, timeout)
            async with state.lock:
                out: list[Delivery] = []
                # Deliveries of an earlier fetch's request that arrived after that fetch gave up.
                late: list[Msg] = []
                while len(late) < limit and not state.queue.empty():
                    item = self._check(state, state.queue.get_nowait(), "")
                    if isinstance(item, Msg):
                        late.append(item)
                await self._accept(state, late, out)
                while True:
                    if len(out) < limit:
                        await self._accept(state, await self._pull(state, limit - len(out), None), out)
                    if out:
                        return out
                    remaining = deadline - loop.time()
                    if remaining < 0.01:
                        return []
                    # Wait for one event; the no-wait pull above then gathers whatever came with it.
                    await self._accept(state, await self._pull(state, 1, remaining), out)
                    if not out and deadline - loop.time() < 0.01:
                        return []

    async def _pull(self, state: _Consumer, batch: int, expires: float | None) -> list[Msg]:
        """One pull request: no-wait when ``expires`` is None, else waiting up to ``expires`` seconds."""
        state.requests += 1
        reply = f"{state.inbox}{state.requests}"
        request: dict[str, Any] = {"batch": batch}
        if expires is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(expires * 1e9)
        nc = self._conn()
        await nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{state.durable}",
            _JSON.encode(request).encode(),
            reply=reply,
        )
        loop = asyncio.get_running_loop()
        answer_by = loop.time() + (expires or 0.0)
        guard = answer_by + self.request_timeout
        # A consumer deleted behind this bus's back answers nothing: after a second of silence,
        # look it up, then wait out the rest of the request timeout for a slow server.
        probe = min(guard, answer_by + 1.0)
        msgs: list[Msg] = []
        while len(msgs) < batch:
            try:
                item = await asyncio.wait_for(state.queue.get(), max(0.0, probe - loop.time()))
            except TimeoutError:
                if probe < guard:
                    await self._known_on_server(state)
                    probe = guard
                    continue
                raise StoreError(
                    f"JetStream at {self._where}: no answer to a pull from {state.name!r}"
                ) from None
            checked = self._check(state, item, reply)
            if checked is _END:
                break
            if isinstance(checked, Msg):
                msgs.append(checked)
        return msgs

    def _check(self, state: _Consumer, item: Any, reply: str) -> Msg | object:
        """What came into the inbox: a delivery (Msg), ``_END`` for the status that ends the request
        ``reply``, ``_SKIP`` for a status of an earlier request or a heartbeat; errors raise."""
        if item is _CLOSED or item is _DELETED:
            state.queue.put_nowait(item)  # for any other waiter
            if item is _DELETED:
                raise ReferenceError_(f"event bus consumer {state.name!r} was deleted")
            raise StoreError(f"JetStream event bus at {self._where} is closed")
        msg: Msg = item
        headers = msg.headers or {}
        status = headers.get(api.Header.STATUS)
        if status is None:
            return msg if msg.reply else _SKIP
        if msg.subject != reply or status == "100":
            return _SKIP
        if status in ("404", "408"):
            return _END
        description = headers.get(api.Header.DESCRIPTION, "")
        if status == "409" and "deleted" in description.lower():
            raise ReferenceError_(f"event bus consumer {state.name!r} was deleted")
        raise StoreError(f"JetStream at {self._where}: pull from {state.name!r}: {status} {description}")

    async def _known_on_server(self, state: _Consumer) -> None:
        try:
            await self._jet().consumer_info(self.stream, state.durable)
        except nats.js.errors.NotFoundError:
            self._consumers.pop(state.name, None)
            if state.sub is not None:
                with contextlib.suppress(nats.errors.Error):
                    await state.sub.unsubscribe()
            raise ReferenceError_(f"no event bus consumer named {state.name!r}") from None

    async def _accept(self, state: _Consumer, msgs: Sequence[Msg], out: list[Delivery]) -> None:
        """Turn deliveries into Delivery records; ack what the filters drop, terminate what is not ours.
        Those two are sent without waiting for the server: one that is lost only brings the message
        back after ``ack_wait``, to be dropped again."""
        nc = self._conn()
        for msg in msgs:
            meta = msg.metadata
            seq = int(meta.sequence.stream)
            parts = self._parse_subject(msg.subject)
            event: Any = None
            if parts is not None:
                try:
                    event = json.loads(msg.data)
                except ValueError:
                    event = None
            if parts is None or not isinstance(event, dict):
                log.warning(
                    "JetStream %s: seq %d on %s is not a Sluicegate event; dropped",
                    self.stream,
                    seq,
                    msg.subject,
                )
                await nc.publish(msg.reply, b"+TERM")
                continue
            if not any(f.matches(*parts) for f in state.filters):
                await nc.publish(msg.reply, b"+ACK")
                continue
            state.held[seq] = msg
            out.append(
                Delivery(
                    seq=seq,
                    namespace=parts[0],
                    event=event,
                    published_at=meta.timestamp.timestamp(),
                    deliveries=int(meta.num_delivered),
                )
            )

    # --- acknowledging ---------------------------------------------------------------------------------

    async def ack(self, consumer: str, seq: int, *, kv_updates: Sequence[KVUpdate] = ()) -> bool:
        """Acknowledge a delivery this bus holds, after writing ``kv_updates``; False, writing nothing,
        when it holds none for ``seq`` (acked already, or never delivered to this bus)."""
        return bool(await self.ack_batch(consumer, [seq], kv_updates=kv_updates))

    async def ack_batch(
        self, consumer: str, seqs: Sequence[int], *, kv_updates: Sequence[KVUpdate] = ()
    ) -> list[int]:
        """Write ``kv_updates``, then acknowledge the deliveries of ``seqs`` this bus holds; return those.
        Nothing is written when it holds none. Two steps, state first: see the module docstring."""
        encoded = [
            (
                self._kv_key(u.bucket, u.key),
                None if u.value is None else _encode_value(u.bucket, u.key, u.value),
            )
            for u in kv_updates
        ]
        async with self._op(f"ack on {consumer!r}"):
            state = self._consumers.get(consumer)
            if state is None:
                return []
            held = [(seq, state.held[seq]) for seq in dict.fromkeys(seqs) if seq in state.held]
            if not held:
                return []
            for key, data in encoded:
                await self._kv_write(key, data)
            for seq, _ in held:
                del state.held[seq]
            results = await asyncio.gather(
                *(msg.ack_sync(timeout=self.request_timeout) for _, msg in held), return_exceptions=True
            )
            failed = [
                (seq, msg, r)
                for (seq, msg), r in zip(held, results, strict=True)
                if isinstance(r, BaseException)
            ]
            for seq, msg, _ in failed:
                state.held.setdefault(seq, msg)
            if failed:
                first = failed[0][2]
                raise StoreError(
                    f"JetStream at {self._where}: {len(failed)} of {len(held)} acks on {consumer!r} were not"
                    f" confirmed ({_describe(first)}); their events come back after ack_wait"
                ) from first
            return [seq for seq, _ in held]

    async def nak(self, consumer: str, seq: int, *, delay: float = 0.0) -> bool:
        async with self._op(f"nak on {consumer!r}"):
            state = self._consumers.get(consumer)
            msg = state.held.pop(seq, None) if state is not None else None
            if msg is None:
                return False
            verb = b"-NAK" if delay <= 0 else b"-NAK " + _JSON.encode({"delay": int(delay * 1e9)}).encode()
            await self._conn().publish(msg.reply, verb)
            await self._conn().flush(timeout=max(1, round(self.request_timeout)))
            return True

    # --- reading the log -------------------------------------------------------------------------------

    async def read(
        self, from_seq: int = 1, limit: int = 100, filters: Sequence[SubjectFilter] | None = None
    ) -> list[BusRecord]:
        """Events with ``seq >= from_seq`` matching any of ``filters`` (all when None), in order; one
        lookup of the next matching message per record, read from the stream leader
        (``sluice events tail``)."""
        wanted = tuple(filters) if filters else (SubjectFilter(),)
        subject = self._filter_subject(covering_filter(wanted))
        out: list[BusRecord] = []
        seq = max(1, from_seq)
        async with self._op("read"):
            js = self._jet()
            while len(out) < limit:
                try:
                    raw = await js.get_msg(self.stream, seq=seq, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    break
                found = int(raw.seq or seq)
                seq = found + 1
                parts = self._parse_subject(raw.subject or "")
                if parts is None or not any(f.matches(*parts) for f in wanted):
                    continue
                try:
                    event = json.loads(raw.data or b"")
                except ValueError:
                    continue
                published = raw.time.timestamp() if raw.time is not None else 0.0
                out.append(BusRecord(seq=found, namespace=parts[0], event=event, published_at=published))
        return out

    async def last_seq(self) -> int:
        async with self._op("stream info"):
            info = await self._jet().stream_info(self.stream)
            return int(info.state.last_seq or 0)

    # --- key-value -------------------------------------------------------------------------------------

    @staticmethod
    def _kv_key(bucket: str, key: str) -> str:
        return f"{kv_token(bucket)}.{kv_token(key)}"

    async def _kv_write(self, key: str, data: bytes | None) -> bool:
        kv = self._bucket()
        if data is not None:
            await kv.put(key, data)
            return True
        try:
            await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return False
        await kv.delete(key)
        return True

    async def kv_get(self, bucket: str, key: str) -> dict[str, Any] | None:
        async with self._op("kv get"):
            try:
                entry = await self._bucket().get(self._kv_key(bucket, key))
            except nats.js.errors.KeyNotFoundError:
                return None
            value: dict[str, Any] = json.loads(entry.value or b"null")
            return value

    async def kv_put(self, bucket: str, key: str, value: Mapping[str, Any]) -> None:
        data = _encode_value(bucket, key, value)
        async with self._op("kv put"):
            await self._kv_write(self._kv_key(bucket, key), data)

    async def kv_delete(self, bucket: str, key: str) -> bool:
        async with self._op("kv delete"):
            return await self._kv_write(self._kv_key(bucket, key), None)

    async def kv_list(self, bucket: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        async with self._op("kv list"):
            watcher = await self._bucket().watch(f"{kv_token(bucket)}.*", ignore_deletes=True)
            try:
                while True:
                    # nats-py leaves the watcher's methods unannotated.
                    entry = await watcher.updates(timeout=self.request_timeout)  # type: ignore[no-untyped-call]
                    if entry is None:  # the end of what the bucket held when the watch began
                        break
                    out[_kv_untoken(entry.key.split(".", 1)[1])] = json.loads(entry.value or b"null")
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await watcher.stop()  # type: ignore[no-untyped-call]
        return dict(sorted(out.items()))

    # --- the rest of the port --------------------------------------------------------------------------

    async def compact(self) -> int:
        """Nothing to do: the stream's limits are enforced by the server as messages arrive."""
        async with self._op("compact"):
            return 0

    async def close(self) -> None:
        """Let publishes, acks and key-value writes under way finish, end waiting fetches, disconnect."""
        if self._closed:
            return
        self._closed = True
        for state in self._consumers.values():
            state.queue.put_nowait(_CLOSED)
        await self._idle.wait()
        nc, self._nc, self._js, self._kv = self._nc, None, None, None
        self._consumers.clear()
        if nc is not None:
            try:
                await nc.close()
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                log.warning("NATS at %s: closing: %s", self._where, _describe(exc))


if TYPE_CHECKING:
    _fits_the_port: type[EventBus] = JetStreamBus  # mypy checks the bus against the Protocol


__all__ = ["JetStreamBus", "consumer_id", "covering_filter", "kv_token", "subject_token"]
