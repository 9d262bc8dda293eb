"""Trigger sources fetched at firing time (engine.runtime.triggersource) against real services: an aiohttp
server (plain and TLS) for ``url``, moto's S3 server for ``s3``, and git repositories made in a temporary
directory, read over ``file://`` and over smart HTTP (``git http-backend`` behind basic authentication)
for ``git``. Also: the validation of those sources, the cache, the worker-thread fetch, and a sensor
on the embedded bus and engine that submits the Workflow each kind of source holds."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from engine.errors import SluiceError
from engine.events.actions import ActionError
from engine.events.validate import sensor_problems
from engine.runtime.local.engine import LocalEngine, StoreObjects
from engine.runtime.local.eventbus import LocalEventBus
from engine.runtime.local.triggers import LocalObjectActions
from engine.runtime.sensors import SensorRunner
from engine.runtime.triggersource import MAX_SOURCE_BYTES, TriggerSources
from engine.spec.events import Sensor, TriggerTemplate
from tests.events.conftest import webhook_event
from tests.s3server import ACCESS_KEY, BUCKET, SECRET_KEY, MotoS3, moto_server, s3

__all__ = ["moto_server", "s3"]  # the fixtures, for pytest

NS = "default"
GIT = shutil.which("git")


def workflow_text(prefix: str, message: str = "hello") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"generateName": f"{prefix}-"},
            "spec": {
                "entrypoint": "main",
                "templates": [
                    {"name": "main", "container": {"image": "busybox", "command": ["echo", message]}}
                ],
            },
        }
    )


def template(source: dict[str, Any]) -> TriggerTemplate:
    return TriggerTemplate.parse({"name": "t", "k8s": {"operation": "create", "source": source}}, "template")


@dataclass
class Lookup:
    """ConfigMaps and Secrets held in memory (the runtime's ObjectLookup)."""

    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.configmaps.get(name)

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ================================================================================================ servers


class ThreadedServer:
    """An aiohttp application served from a thread of its own, so that blocking clients in the test's
    thread (and its event loop) can reach it."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._runner = web.AppRunner(self.app)
            await self._runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start()
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(10), "the test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@dataclass
class Site:
    """What the url tests' server answers, and how many GETs of the workflow it served."""

    body: str = workflow_text("from-url")
    status: int = 200
    delay: float = 0.0
    hits: int = 0


def site_app(site: Site) -> web.Application:
    async def workflow(request: web.Request) -> web.Response:
        site.hits += 1
        await asyncio.sleep(site.delay)
        return web.Response(status=site.status, text=site.body, content_type="application/yaml")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/wf.yaml")

    async def to_file(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def to_ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://127.0.0.1/wf.yaml")

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"#" * (MAX_SOURCE_BYTES + 1))

    app = web.Application()
    app.router.add_get("/wf.yaml", workflow)
    app.router.add_get("/moved", moved)
    app.router.add_get("/to-file", to_file)
    app.router.add_get("/to-ftp", to_ftp)
    app.router.add_get("/huge", huge)
    return app


@pytest.fixture
def site() -> Iterator[tuple[Site, ThreadedServer]]:
    state = Site()
    with ThreadedServer(site_app(state)) as server:
        yield state, server


def self_signed(tmp: Path) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    if openssl is None:
        why = "openssl not found (make test installs it, scripts/install-sysdeps.sh): no TLS certificate"
        print(why)
        pytest.skip(why)
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1"]
    subprocess.run(
        [openssl, *request, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# ------------------------------------------------------------------------------------------------ git


def git(*args: str, cwd: Path | None = None) -> str:
    if GIT is None:
        why = "git not found (make test installs it, scripts/install-sysdeps.sh): git sources need it"
        print(why)
        pytest.skip(why)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class Repo:
    bare: Path  # the repository as a server holds it
    v1: str  # the commit tagged v1

    @property
    def url(self) -> str:
        return self.bare.as_uri()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repository whose ``main`` holds workflows/wf.yaml at version 2, tag ``v1`` version 1, and
    branch ``other`` a third version; workflows/link.yaml is a symbolic link to it."""
    work = tmp_path / "work"
    git("init", "--quiet", "--initial-branch=main", str(work))
    (work / "workflows").mkdir()
    (work / "workflows" / "wf.yaml").write_text(workflow_text("from-git", "v1"))
    (work / "workflows" / "link.yaml").symlink_to("wf.yaml")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "v1", cwd=work)
    git("tag", "v1", cwd=work)
    v1 = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "--quiet", "-b", "other", cwd=work)
    (work / "workflows" / "wf.yaml").write_text(workflow_text("from-git", "other"))
    git("commit", "--quiet", "-am", "other", cwd=work)
    git("checkout", "--quiet", "main", cwd=work)
    (work / "workflows" / "wf.yaml").write_text(workflow_text("from-git", "v2"))
    git("commit", "--quiet", "-am", "v2", cwd=work)
    bare = tmp_path / "srv" / "repo.git"
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return Repo(bare=bare, v1=v1)


def git_http_app(root: Path, username: str, password: str) -> web.Application:
    """Smart HTTP for the repositories under ``root``: ``git http-backend`` as a CGI program, behind
    basic authentication."""
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    async def backend(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "REMOTE_USER": username,
        }
        assert GIT is not None
        # A blocking run in a worker thread: asyncio subprocesses of a loop in a non-main thread depend
        # on the process's child watcher, which an engine started in the same test process replaces.
        body_in = await request.read()
        done = await asyncio.to_thread(
            subprocess.run, [GIT, "http-backend"], env=env, input=body_in, capture_output=True, check=False
        )
        out = done.stdout
        head, _, body = out.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", backend)
    return app


# ============================================================================================= validation


def sensor_with(source: dict[str, Any], trigger: str = "k8s") -> Sensor:
    """A Sensor of one webhook dependency and one ``trigger`` (k8s or argoWorkflow) with ``source``."""
    return Sensor.parse(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Sensor",
            "metadata": {"name": "fetching"},
            "spec": {
                "dependencies": [{"name": "push", "eventSourceName": "webhook", "eventName": "example"}],
                "triggers": [{"template": {"name": "start", trigger: {"source": source}}}],
            },
        }
    )


BASE = "spec.triggers[0].template.k8s.source"
S3_OK: dict[str, Any] = {
    "bucket": {"name": "workflows", "key": "wf.yaml"},
    "endpoint": "minio:9000",
    "insecure": True,
    "accessKey": {"name": "minio", "key": "accesskey"},
    "secretKey": {"name": "minio", "key": "secretkey"},
}
GIT_OK: dict[str, Any] = {
    "url": "https://example.com/repo.git",
    "cloneDirectory": "/git/repo",
    "filePath": "workflows/wf.yaml",
    "tag": "v1",
    "creds": {"username": {"name": "git", "key": "user"}, "password": {"name": "git", "key": "token"}},
}

INVALID_SOURCES: list[tuple[str, dict[str, Any], str, str]] = [
    ("a url that is not http", {"url": {"path": "ftp://example.com/wf.yaml"}}, "url.path", "http"),
    ("a url without path", {"url": {"verifycert": True}}, "url.path", "required"),
    ("an s3 source without bucket", {"s3": {"endpoint": "minio:9000"}}, "s3.bucket", "required"),
    ("an s3 bucket without key", {"s3": {"bucket": {"name": "b"}}}, "s3.bucket.key", "required"),
    (
        "an s3 endpoint with a scheme",
        {"s3": {**S3_OK, "endpoint": "http://minio:9000"}},
        "s3.endpoint",
        "host",
    ),
    (
        "an s3 access key without secret key",
        {"s3": {k: v for k, v in S3_OK.items() if k != "secretKey"}},
        "s3",
        "go together",
    ),
    (
        "an s3 custom certificate authority",
        {"s3": {**S3_OK, "caCertificate": {"name": "ca", "key": "ca.crt"}}},
        "s3.caCertificate",
        "unsupported",
    ),
    ("a git source without url", {"git": {"filePath": "wf.yaml"}}, "git.url", "required"),
    ("a git source without filePath", {"git": {"url": "https://h/r.git"}}, "git.filePath", "required"),
    ("a git ssh url", {"git": {**GIT_OK, "url": "git@github.com:o/r.git"}}, "git.url", "unsupported"),
    ("a git ext:: url", {"git": {**GIT_OK, "url": "ext::sh -c id"}}, "git.url", "must start with"),
    (
        "a git ssh key",
        {"git": {**GIT_OK, "sshKeySecret": {"name": "k", "key": "key"}}},
        "git.sshKeySecret",
        "unsupported",
    ),
    ("a git branch and a tag", {"git": {**GIT_OK, "branch": "main"}}, "git", "set one of"),
    ("a git tag that is an option", {"git": {**GIT_OK, "tag": "--upload-pack=x"}}, "git.tag", "not a valid"),
    ("a git file outside the repository", {"git": {**GIT_OK, "filePath": "../x"}}, "git.filePath", "inside"),
    (
        "git credentials without password",
        {"git": {**GIT_OK, "creds": {"username": {"name": "git", "key": "user"}}}},
        "git.creds.password",
        "required",
    ),
    (
        "git credentials on a file url",
        {"git": {**GIT_OK, "url": "file:///srv/repo.git"}},
        "git.creds",
        "http(s)",
    ),
    ("a config map without name", {"configmap": {"key": "wf"}}, "configmap.name", "required"),
]


@pytest.mark.parametrize(
    ("source", "path", "message"),
    [case[1:] for case in INVALID_SOURCES],
    ids=[case[0] for case in INVALID_SOURCES],
)
def test_an_invalid_trigger_source_is_reported_at_its_field(
    source: dict[str, Any], path: str, message: str
) -> None:
    try:
        errors, _ = sensor_problems(sensor_with(source))
    except SluiceError as exc:  # a field that does not parse at all
        errors = list(getattr(exc, "problems", ()))
    assert [p.path for p in errors] == [f"{BASE}.{path}"], errors
    assert message in errors[0].message


@pytest.mark.parametrize(
    "source",
    [
        {"url": {"path": "https://example.com/wf.yaml", "verifycert": False}},
        {"s3": S3_OK},
        {"s3": {"bucket": {"name": "b", "key": "k.yaml"}}},
        {"git": GIT_OK},
        {"git": {"url": "file:///srv/repo.git", "filePath": "wf.yaml", "ref": "refs/pull/1/head"}},
    ],
    ids=["url", "s3 with keys", "s3 without keys", "git over https with creds", "git file url at a ref"],
)
def test_url_s3_and_git_trigger_sources_validate(source: dict[str, Any]) -> None:
    assert sensor_problems(sensor_with(source)) == ([], [])


# ======================================================================================== configmap, file


def test_a_configmap_source_is_read_at_each_load_and_a_missing_key_is_named() -> None:
    lookup = Lookup(configmaps={"sources": {"wf": "kind: Workflow\n"}})
    sources = TriggerSources(lookup)
    tpl = template({"configmap": {"name": "sources", "key": "wf"}})
    assert sources.load(tpl, NS) == "kind: Workflow\n"
    lookup.configmaps["sources"]["wf"] = "kind: Changed\n"
    assert sources.load(tpl, NS) == "kind: Changed\n"
    with pytest.raises(SluiceError, match="trigger source: key 'no' of config map 'sources' not found"):
        sources.load(template({"configmap": {"name": "sources", "key": "no"}}), NS)


def test_a_file_source_is_read_and_a_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("kind: Workflow\n")
    sources = TriggerSources(Lookup())
    assert sources.load(template({"file": {"path": str(tmp_path / "wf.yaml")}}), NS) == "kind: Workflow\n"
    with pytest.raises(SluiceError, match=r"trigger source: cannot read .*missing\.yaml"):
        sources.load(template({"file": {"path": str(tmp_path / "missing.yaml")}}), NS)


def test_a_resource_source_loads_nothing() -> None:
    assert TriggerSources(Lookup()).load(template({"resource": {"kind": "Workflow"}}), NS) is None


# ============================================================================================= url


def test_a_url_source_is_the_body_of_a_get_and_redirects_are_followed(
    site: tuple[Site, ThreadedServer],
) -> None:
    state, server = site
    sources = TriggerSources(Lookup(), ttl=0)
    assert sources.load(template({"url": {"path": server.url("/wf.yaml")}}), NS) == state.body
    assert sources.load(template({"url": {"path": server.url("/moved")}}), NS) == state.body
    assert state.hits == 2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", "answered 404"),
        ("/to-file", "Redirection to url 'file:///etc/passwd' is not allowed"),
        ("/to-ftp", "answered 302 Found"),
        ("/huge", f"larger than {MAX_SOURCE_BYTES:,} bytes"),
    ],
    ids=["not found", "redirect to a file url", "redirect to an ftp url", "too large"],
)
def test_a_url_source_that_cannot_be_read_fails_with_the_reason(
    site: tuple[Site, ThreadedServer], path: str, message: str
) -> None:
    _, server = site
    with pytest.raises(SluiceError, match=message):
        TriggerSources(Lookup()).load(template({"url": {"path": server.url(path)}}), NS)


def test_an_https_url_source_verifies_the_certificate_unless_verifycert_is_false(tmp_path: Path) -> None:
    state = Site()
    with ThreadedServer(site_app(state), ssl_context=self_signed(tmp_path)) as server:
        url = server.url("/wf.yaml", scheme="https")
        sources = TriggerSources(Lookup(), ttl=0)
        with pytest.raises(SluiceError, match="CERTIFICATE_VERIFY_FAILED"):
            sources.load(template({"url": {"path": url}}), NS)
        with pytest.raises(SluiceError, match="CERTIFICATE_VERIFY_FAILED"):
            sources.load(template({"url": {"path": url, "verifycert": True}}), NS)
        assert sources.load(template({"url": {"path": url, "verifycert": False}}), NS) == state.body
        # verifyCert is the API's spelling of the same field.
        with pytest.raises(SluiceError, match="CERTIFICATE_VERIFY_FAILED"):
            sources.load(template({"url": {"path": url, "verifyCert": True}}), NS)
        assert sources.load(template({"url": {"path": url, "verifyCert": False}}), NS) == state.body


def test_a_fetched_source_is_reused_for_the_cache_time_then_fetched_again(
    site: tuple[Site, ThreadedServer],
) -> None:
    state, server = site
    clock = Clock()
    sources = TriggerSources(Lookup(), ttl=10, clock=clock)
    tpl = template({"url": {"path": server.url("/wf.yaml")}})
    assert sources.load(tpl, NS) == state.body
    state.body = workflow_text("changed")
    clock.now += 9.9
    assert sources.load(tpl, NS) == workflow_text("from-url")
    assert state.hits == 1
    clock.now += 0.1
    assert sources.load(tpl, NS) == workflow_text("changed")
    assert state.hits == 2
    # Another namespace is another source (its Secrets, its objects).
    assert sources.load(tpl, "other") == workflow_text("changed")
    assert state.hits == 3


def test_a_failed_fetch_is_not_cached(site: tuple[Site, ThreadedServer]) -> None:
    state, server = site
    sources = TriggerSources(Lookup(), ttl=60)
    tpl = template({"url": {"path": server.url("/wf.yaml")}})
    state.status = 503
    with pytest.raises(SluiceError, match="answered 503"):
        sources.load(tpl, NS)
    state.status, state.body = 200, workflow_text("fixed")
    assert sources.load(tpl, NS) == workflow_text("fixed")


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await fn()

    return asyncio.run(main())


def test_concurrent_firings_share_one_fetch_in_a_worker_thread_while_the_loop_runs(
    site: tuple[Site, ThreadedServer],
) -> None:
    state, server = site
    state.delay = 0.5
    sources = TriggerSources(Lookup(), ttl=0)  # no cache: only the sharing of the fetch in flight
    tpl = template({"url": {"path": server.url("/wf.yaml")}})

    async def go() -> tuple[list[str | None], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        texts = await asyncio.gather(*(sources.fetch(tpl, NS) for _ in range(20)))
        task.cancel()
        return list(texts), ticks

    texts, ticks = run(go)
    assert texts == [state.body] * 20
    assert state.hits == 1
    assert ticks >= 20  # the loop ran on during the 0.5 s fetch


def test_a_fetch_that_fails_fails_every_firing_waiting_for_it(site: tuple[Site, ThreadedServer]) -> None:
    state, server = site
    state.delay = 0.2
    sources = TriggerSources(Lookup(), ttl=60)
    tpl = template({"url": {"path": server.url("/missing")}})

    async def go() -> list[BaseException | str | None]:
        return await asyncio.gather(*(sources.fetch(tpl, NS) for _ in range(3)), return_exceptions=True)

    results = run(go)
    assert len(results) == 3
    assert all(isinstance(r, SluiceError) and "answered 404" in str(r) for r in results)


# ============================================================================================= s3


def s3_lookup() -> Lookup:
    return Lookup(secrets={"s3-creds": {"accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}})


def s3_source(server: MotoS3, key: str, secret: str = "s3-creds") -> dict[str, Any]:
    return {
        "s3": {
            "bucket": {"name": BUCKET, "key": key},
            "endpoint": server.endpoint,
            "insecure": True,
            "accessKey": {"name": secret, "key": "accesskey"},
            "secretKey": {"name": secret, "key": "secretkey"},
        }
    }


def test_an_s3_source_is_the_object_read_with_the_secrets_keys(s3: MotoS3) -> None:
    body = workflow_text("from-s3")
    s3.client().put_object(Bucket=BUCKET, Key="workflows/wf.yaml", Body=body.encode())
    sources = TriggerSources(s3_lookup())
    assert sources.load(template(s3_source(s3, "workflows/wf.yaml")), NS) == body


def test_an_s3_source_that_is_missing_or_lacks_its_secret_fails_with_the_reason(s3: MotoS3) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="dir/a.yaml", Body=b"a")
    sources = TriggerSources(s3_lookup())
    with pytest.raises(SluiceError, match=f"not found: s3://{BUCKET}/nothing.yaml"):
        sources.load(template(s3_source(s3, "nothing.yaml")), NS)
    with pytest.raises(SluiceError, match=f"no object at s3://{BUCKET}/dir"):
        sources.load(template(s3_source(s3, "dir")), NS)
    with pytest.raises(SluiceError, match=r"Secret default/absent \(s3.accessKey\) not found"):
        sources.load(template(s3_source(s3, "dir/a.yaml", secret="absent")), NS)


# ============================================================================================= git


@pytest.mark.parametrize(
    ("revision", "version"),
    [
        ({}, "v2"),
        ({"tag": "v1"}, "v1"),
        ({"branch": "other"}, "other"),
        ({"ref": "refs/heads/other"}, "other"),
    ],
    ids=["default branch", "tag", "branch", "ref"],
)
def test_a_git_source_is_the_file_at_the_revision(repo: Repo, revision: dict[str, str], version: str) -> None:
    source = {"git": {"url": repo.url, "filePath": "/workflows/wf.yaml", **revision}}
    assert TriggerSources(Lookup()).load(template(source), NS) == workflow_text("from-git", version)


def test_a_git_source_may_name_a_commit(repo: Repo) -> None:
    source = {"git": {"url": repo.url, "filePath": "workflows/wf.yaml", "ref": repo.v1}}
    assert TriggerSources(Lookup()).load(template(source), NS) == workflow_text("from-git", "v1")


def test_a_git_source_that_cannot_be_read_fails_with_git_s_reason(repo: Repo) -> None:
    sources = TriggerSources(Lookup())
    for path, reason in (
        ("nothing.yaml", "no such file"),
        ("workflows", "not a file"),
        ("workflows/link.yaml", "a symbolic link"),
    ):
        with pytest.raises(SluiceError, match=f"trigger source: {path} of .* at HEAD: {reason}"):
            sources.load(template({"git": {"url": repo.url, "filePath": path}}), NS)
    with pytest.raises(SluiceError, match=r"git fetch failed for workflows/wf.yaml .* at refs/tags/v9"):
        sources.load(template({"git": {"url": repo.url, "filePath": "workflows/wf.yaml", "tag": "v9"}}), NS)


def test_a_git_source_that_fails_validation_is_an_action_error(repo: Repo) -> None:
    source = {"git": {"url": "git@example.com:o/r.git", "filePath": "wf.yaml"}}
    with pytest.raises(ActionError, match="unsupported: SSH"):
        TriggerSources(Lookup()).load(template(source), NS)


def test_a_git_source_over_http_sends_the_secrets_basic_credentials(repo: Repo) -> None:
    lookup = Lookup(secrets={"git": {"user": "robot", "token": "s3cret"}})
    with ThreadedServer(git_http_app(repo.bare.parent, "robot", "s3cret")) as server:
        source = {
            "git": {
                "url": server.url("/repo.git"),
                "filePath": "workflows/wf.yaml",
                "tag": "v1",
                "creds": {
                    "username": {"name": "git", "key": "user"},
                    "password": {"name": "git", "key": "token"},
                },
            }
        }
        assert TriggerSources(lookup).load(template(source), NS) == workflow_text("from-git", "v1")
        lookup.secrets["git"]["token"] = "wrong"
        with pytest.raises(SluiceError, match="git fetch failed"):
            TriggerSources(lookup).load(template(source), NS)
        anonymous = {"git": {k: v for k, v in source["git"].items() if k != "creds"}}
        with pytest.raises(SluiceError, match="git fetch failed"):
            TriggerSources(lookup).load(template(anonymous), NS)


# ============================================================================================= a sensor


def submitted_by_a_sensor(
    home: Path, source: dict[str, Any], secrets: dict[str, dict[str, str]]
) -> list[Any]:
    """Run a Sensor whose trigger has ``source`` on the embedded bus and engine, send one event, and
    return the manifests of the workflows it submitted (after they finished)."""

    async def go() -> list[Any]:
        eng = LocalEngine(home=home)
        await eng.start(adopt=False)
        for name, data in secrets.items():
            eng.store.put_object("Secret", NS, name, {"metadata": {"name": name}, "stringData": data})
        bus = LocalEventBus(home / "events.db")
        runner = SensorRunner(
            namespace=NS,
            sensor=sensor_with(source, "argoWorkflow"),
            bus=bus,
            objects=LocalObjectActions(eng),
            lookup=StoreObjects(eng.store),
        )
        await runner.start()
        try:
            await bus.publish(NS, webhook_event(1))
            deadline = time.monotonic() + 30
            while not eng.store.list_workflows() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await runner.stop()
            await bus.close()
        rows = eng.store.list_workflows()
        for row in rows:
            await eng.wait(row.name)
        manifests = [row.manifest for row in rows]
        await eng.close()
        return manifests

    result: list[Any] = asyncio.run(go())
    return result


def assert_submitted(manifests: list[Any], prefix: str, message: str) -> None:
    assert len(manifests) == 1, manifests
    (wf,) = manifests
    assert wf["metadata"]["name"].startswith(f"{prefix}-")
    assert wf["spec"]["templates"][0]["container"]["command"] == ["echo", message]


def test_a_sensor_submits_the_workflow_its_url_source_holds(
    tmp_path: Path, site: tuple[Site, ThreadedServer]
) -> None:
    _, server = site
    manifests = submitted_by_a_sensor(tmp_path / "home", {"url": {"path": server.url("/wf.yaml")}}, {})
    assert_submitted(manifests, "from-url", "hello")


def test_a_sensor_submits_the_workflow_its_s3_source_holds(tmp_path: Path, s3: MotoS3) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="wf.yaml", Body=workflow_text("from-s3", "s3").encode())
    secrets = {"s3-creds": {"accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}}
    manifests = submitted_by_a_sensor(tmp_path / "home", s3_source(s3, "wf.yaml"), secrets)
    assert_submitted(manifests, "from-s3", "s3")


def test_a_sensor_submits_the_workflow_its_git_source_holds(tmp_path: Path, repo: Repo) -> None:
    source = {"git": {"url": repo.url, "filePath": "workflows/wf.yaml", "tag": "v1"}}
    manifests = submitted_by_a_sensor(tmp_path / "home", source, {})
    assert_submitted(manifests, "from-git", "v1")
