"""Trigger sources read at firing time: the text of a ``k8s`` or ``argoWorkflow`` trigger's object.

Both runtimes' trigger actions hold one :class:`TriggerSources` and hand it their ConfigMap and Secret
lookups (:class:`engine.runtime.base.ObjectLookup`): the local server's
(:class:`engine.runtime.local.triggers.LocalObjectActions`, the local store) and ``sluice sensor run``'s
(:class:`engine.runtime.kubernetes.eventrun.ClusterObjectActions`, the API server). The text it returns
is what :func:`engine.events.actions.plan_action` parses as the trigger's object. Sources:

* ``resource`` and ``inline`` are in the Sensor itself: nothing to load (None);
* ``configmap``: a key of a ConfigMap in the Sensor's namespace, read at every firing;
* ``file``: a file of the machine (or pod) that runs the sensor, read at every firing;
* ``url``: an HTTP(S) GET that must answer 2xx (redirects are followed, to http(s) only). The server's
  certificate is verified unless ``verifyCert: false`` (Argo skips the check unless ``verifyCert`` is
  true; verifying by default is the safer reading of an unset field);
* ``s3``: one object of a bucket (Argo's S3Artifact: ``bucket.name``/``bucket.key``, ``endpoint``,
  ``insecure``, ``region``, ``accessKey``/``secretKey`` from Secrets; without keys the S3 client's own
  credential chain applies), through :mod:`engine.runtime.s3`;
* ``git``: the file ``filePath`` of a repository (``https``, ``http``, ``git`` or ``file`` URL) at
  ``ref``, ``tag`` or ``branch``, or its default branch (HEAD; Argo takes ``master``), fetched by the
  ``git`` program (2.31 or later for ``creds``) into a temporary directory that is removed afterwards
  (``cloneDirectory`` is not used): one shallow fetch of that revision, then the file is read from the
  fetched commit (a symbolic link is refused, as Argo does). With
  ``creds`` the username and password (or token) go to the server as HTTP basic authentication, through
  git's environment rather than its command line or the URL. git runs with a fixed argument list,
  without a shell, without the user's or the system's git configuration, and only over the transports
  above.

Fetched sources (url, s3, git) are cached for :data:`CACHE_SECONDS` per source (its spec and the
Sensor's namespace), as a sensor may fire hundreds of times a second: an object changed at its URL, in
its bucket or in its repository is used by the firings that start at most that long after the change;
the ones before still use the copy fetched earlier. A failed fetch is not cached (the next firing, or
the trigger's retry, fetches again). The Secrets a fetch needs are read when it is made, so a changed
Secret also takes effect within that time. ConfigMaps and files are not cached: reading them is cheap
and they change while the sensor runs.

Two ways in. :meth:`TriggerSources.load` is synchronous: a fetch that the cache cannot answer blocks the
caller (:data:`FETCH_TIMEOUT` says for how long at most). :meth:`TriggerSources.fetch` is for a caller
on an event loop: the same, except that such a fetch runs in a worker thread and concurrent firings
that need the same source share one fetch. Lookups of ConfigMaps and Secrets stay on the caller's
thread in both.

Errors: a source that cannot be read (missing key, unreachable server, non-2xx answer, missing object,
failed git fetch, more than :data:`MAX_SOURCE_BYTES`, not UTF-8) raises :class:`~engine.errors.SluiceError`,
which a trigger retries; an ``s3`` or ``git`` spec that does not parse raises
:class:`~engine.events.actions.ActionError` (validation rejects those before a sensor starts).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.errors import ProviderError, SluiceError, SpecError
from engine.events.actions import ActionError
from engine.events.validate import GitArtifact, git_trigger_source, s3_trigger_source
from engine.runtime import s3 as s3client
from engine.runtime.base import ObjectLookup
from engine.spec.events import ArtifactLocation, SecretKeySelector, TriggerTemplate

# How long a fetched source is used before it is fetched again, in seconds.
CACHE_SECONDS = 10.0
# How many fetched sources are kept (a sensor has a handful; trigger parameters may vary them).
CACHE_ENTRIES = 64
# How long a url fetch may wait for the server (to connect, and for each read) and a git fetch may
# run in all, in seconds. An s3 fetch has the S3 client's own limits (engine.runtime.s3).
FETCH_TIMEOUT = 30.0
# The largest source read: a Kubernetes object is at most about 1.5 MiB.
MAX_SOURCE_BYTES = 4 * 1024 * 1024
REMOTE_KINDS = ("url", "s3", "git")
GIT_PROTOCOLS = "http:https:git:file"
SYMLINK_MODE = "120000"

Fetch = Callable[[], str]


def location_of(template: TriggerTemplate) -> ArtifactLocation | None:
    """The ``source`` of a ``k8s`` or ``argoWorkflow`` trigger template; None for other trigger types."""
    spec = template.k8s or template.argo_workflow
    return spec.source if spec else None


class TriggerSources:
    """Loads trigger sources for one runtime, with its ``lookup`` of ConfigMaps and Secrets."""

    def __init__(
        self,
        lookup: ObjectLookup,
        *,
        ttl: float = CACHE_SECONDS,
        timeout: float = FETCH_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self._cache: dict[str, tuple[float, str]] = {}  # key -> (expiry on clock, text)
        self._pending: dict[str, asyncio.Future[str]] = {}

    def load(self, template: TriggerTemplate, namespace: str) -> str | None:
        """The text of the template's source, None for ``resource``/``inline`` (and non-object triggers).
        A url/s3/git fetch the cache cannot answer is made here and now."""
        text, location, key = self._at_hand(template, namespace)
        if location is None:
            return text
        text = self._fetcher(location, namespace)()
        self._remember(key, text)
        return text

    async def fetch(self, template: TriggerTemplate, namespace: str) -> str | None:
        """:meth:`load` for a caller on an event loop: a url/s3/git fetch runs in a worker thread, and
        callers that need the same source meanwhile wait for that one fetch."""
        text, location, key = self._at_hand(template, namespace)
        if location is None:
            return text
        pending = self._pending.get(key)
        if pending is None:
            fetcher = self._fetcher(location, namespace)  # Secrets are read here, on the loop's thread
            pending = asyncio.ensure_future(asyncio.to_thread(fetcher))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: a firing that is cancelled (the sensor stops) leaves the fetch to the others.
        return await asyncio.shield(pending)

    def _at_hand(
        self, template: TriggerTemplate, namespace: str
    ) -> tuple[str | None, ArtifactLocation | None, str]:
        """``(text, None, "")`` when the text needs no fetch (a source in the Sensor, a ConfigMap, a
        file, a fetch still cached); else ``(None, location, cache key)`` of the fetch to make."""
        location = location_of(template)
        if location is None or location.kind() not in REMOTE_KINDS:
            return self._local(location, namespace), None, ""
        key = _cache_key(location, namespace)
        cached = self._cached(key)
        if cached is not None:
            return cached, None, ""
        return None, location, key

    # ---------------------------------------------------------------------------------- in the sensor

    def _local(self, location: ArtifactLocation | None, namespace: str) -> str | None:
        if location is None:
            return None
        if location.configmap is not None:
            ref = location.configmap
            data = self.lookup.configmap(namespace, ref.name or "")
            if data is None or ref.key not in data:
                raise SluiceError(f"trigger source: key {ref.key!r} of config map {ref.name!r} not found")
            return data[ref.key]
        if location.file is not None:
            try:
                return Path(location.file.path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SluiceError(f"trigger source: cannot read {location.file.path}: {exc}") from exc
        return None

    # ---------------------------------------------------------------------------------- the cache

    def _cached(self, key: str) -> str | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expiry, text = entry
        if self.clock() >= expiry:
            del self._cache[key]
            return None
        return text

    def _remember(self, key: str, text: str) -> None:
        if self.ttl <= 0:
            return
        self._cache.pop(key, None)
        while len(self._cache) >= CACHE_ENTRIES:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[key] = (self.clock() + self.ttl, text)

    def _settle(self, key: str, done: asyncio.Future[str]) -> None:
        self._pending.pop(key, None)
        if done.cancelled():
            return
        if done.exception() is None:  # also marks an error as seen when every waiter went away
            self._remember(key, done.result())

    # ---------------------------------------------------------------------------------- fetches

    def _fetcher(self, location: ArtifactLocation, namespace: str) -> Fetch:
        """The blocking fetch of a url/s3/git source, with its Secrets already read."""
        timeout = self.timeout
        if location.url is not None:
            url, verify = location.url.path, location.url.verifies() is not False
            return lambda: fetch_url(url, verify=verify, timeout=timeout)
        try:
            if location.s3 is not None:
                s3 = s3_trigger_source(location.s3)
                access = self._secret(namespace, s3.access_key, "s3.accessKey")
                secret = self._secret(namespace, s3.secret_key, "s3.secretKey")
                return lambda: fetch_s3(
                    bucket=s3.bucket.name,
                    key=s3.bucket.key or "",
                    endpoint=s3.endpoint or s3client.DEFAULT_ENDPOINT,
                    insecure=bool(s3.insecure),
                    region=s3.region,
                    access_key=access,
                    secret_key=secret,
                )
            git = git_trigger_source(location.git)
        except SpecError as exc:
            raise ActionError(f"the trigger's source is invalid: {exc.one_line()}") from None
        creds = git.creds
        username = self._secret(namespace, creds.username if creds else None, "git.creds.username")
        password = self._secret(namespace, creds.password if creds else None, "git.creds.password")
        return lambda: fetch_git(git, username=username, password=password, timeout=timeout)

    def _secret(self, namespace: str, selector: SecretKeySelector | None, field: str) -> str | None:
        if selector is None:
            return None
        data = self.lookup.secret(namespace, selector.name or "")
        if data is not None and selector.key in data:
            return data[selector.key]
        if selector.optional:
            return None
        what = "not found" if data is None else f"has no key {selector.key!r}"
        raise SluiceError(f"trigger source: Secret {namespace}/{selector.name} ({field}) {what}")


def _cache_key(location: ArtifactLocation, namespace: str) -> str:
    return json.dumps([namespace, location.dump()], sort_keys=True, separators=(",", ":"))


def _text(data: bytes, where: str) -> str:
    if len(data) > MAX_SOURCE_BYTES:
        raise ProviderError(f"trigger source: {where} is larger than {MAX_SOURCE_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProviderError(f"trigger source: {where} is not UTF-8 text") from None


# ============================================================================================== url


def fetch_url(url: str, *, verify: bool = True, timeout: float = FETCH_TIMEOUT) -> str:
    """GET ``url`` (http or https; redirects followed to http(s) only); the body of a 2xx answer."""
    shown = _shown_url(url)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # Only the HTTP handlers: a redirect to another scheme (ftp:, file:) has nothing to answer it.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    request = urllib.request.Request(url, headers={"User-Agent": "sluicegate-sensor"})
    try:
        with opener.open(request, timeout=timeout) as resp:
            data = resp.read(MAX_SOURCE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ProviderError(f"trigger source: GET {shown} answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ProviderError(f"trigger source: cannot GET {shown}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise ProviderError(f"trigger source: cannot GET {shown}: {exc}") from None
    return _text(data, shown)


def _shown_url(url: str) -> str:
    """``url`` for messages: without user information and query (they may carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# ============================================================================================== s3


def fetch_s3(
    *,
    bucket: str,
    key: str,
    endpoint: str = s3client.DEFAULT_ENDPOINT,
    insecure: bool = False,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> str:
    """The object ``key`` of ``bucket``, as text."""
    where = f"s3://{bucket}/{key}"
    repository = s3client.open_bucket(
        bucket=bucket,
        endpoint=endpoint,
        insecure=insecure,
        region=region,
        access_key=access_key,
        secret_key=secret_key,
    )
    with tempfile.TemporaryDirectory(prefix="sluice-source-") as tmp:
        dest = Path(tmp) / "object"
        try:
            repository.get({"s3": {"key": key}}, dest)
        except SluiceError as exc:
            raise ProviderError(f"trigger source: {exc}") from exc
        if not dest.is_file():  # the key is a prefix: the repository fetched the objects below it
            raise ProviderError(f"trigger source: no object at {where} (only objects under {key}/)")
        if dest.stat().st_size > MAX_SOURCE_BYTES:
            raise ProviderError(f"trigger source: {where} is larger than {MAX_SOURCE_BYTES:,} bytes")
        return _text(dest.read_bytes(), where)


# ============================================================================================== git


def fetch_git(
    spec: GitArtifact,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = FETCH_TIMEOUT,
) -> str:
    """The file ``spec.file_path`` of the repository at ``spec.url``, at ``spec.revision()``."""
    program = shutil.which("git")
    if program is None:
        raise ProviderError("trigger source: git sources need the git program, which is not installed")
    revision = spec.revision()
    path = spec.file_path.strip("/")
    where = f"{path} of {_shown_url(spec.url)} at {revision}"
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
        "GIT_CONFIG_COUNT": "0",
        "GIT_LITERAL_PATHSPECS": "1",  # filePath is a path, never a pattern
    }
    if username is not None or password is not None:
        token = base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {token}",
        )
    deadline = time.monotonic() + timeout

    def git(*args: str) -> bytes:
        left = deadline - time.monotonic()
        try:
            done = subprocess.run(
                [program, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(left, 0.1),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ProviderError(f"trigger source: git took more than {timeout:g} s for {where}") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            why = lines[-1] if lines else f"exit code {done.returncode}"
            raise ProviderError(f"trigger source: git {args[1]} failed for {where}: {why}")
        return done.stdout

    with tempfile.TemporaryDirectory(prefix="sluice-git-") as repo:
        git_dir = f"--git-dir={repo}"
        git(git_dir, "init", "--quiet", "--bare", "--template=")
        git(git_dir, "fetch", "--quiet", "--depth=1", "--no-tags", spec.url, revision)
        # "<mode> <type> <object> <size>\t<path>", or nothing when there is no such path.
        entry = git(git_dir, "ls-tree", "--long", "FETCH_HEAD", "--", path).decode("utf-8", "replace")
        if not entry:
            raise ProviderError(f"trigger source: {where}: no such file")
        mode, kind, obj, size = entry.split("\t", 1)[0].split()
        if kind != "blob" or mode == SYMLINK_MODE:
            what = "a symbolic link" if mode == SYMLINK_MODE else "not a file"
            raise ProviderError(f"trigger source: {where}: {what}")
        if int(size) > MAX_SOURCE_BYTES:
            raise ProviderError(f"trigger source: {where} is larger than {MAX_SOURCE_BYTES:,} bytes")
        return _text(git(git_dir, "cat-file", "blob", obj), where)


__all__ = [
    "CACHE_SECONDS",
    "FETCH_TIMEOUT",
    "MAX_SOURCE_BYTES",
    "TriggerSources",
    "fetch_git",
    "fetch_s3",
    "fetch_url",
    "location_of",
]
