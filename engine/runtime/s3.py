"""The S3 artifact repository, its configuration in Argo's shape, and how it reaches a step pod.

Four callers:

* the Kubernetes operator reads the artifact repository ConfigMap with
  :func:`parse_repository_configmap` (Argo's format: each data key holds YAML with an ``s3:`` block; the
  ``workflows.argoproj.io/default-artifact-repository`` annotation names the default key; the
  ``artifactRepository:`` nesting of a workflow-controller ConfigMap works too) and hands the result to
  :func:`executor_env`, whose entries go into every step pod's ``init`` and ``wait`` containers;
* those containers (``engine.runtime.kubernetes.executor``) rebuild the repository with
  :func:`repository_from_env` and put and get artifacts through :class:`S3Repository`;
* any runtime that has an :class:`S3Config` may use :class:`S3Repository` as its ``ArtifactRepository``;
* the S3 event source (``engine.events.sources.s3``) is handed :func:`open_bucket` by the runtime that
  hosts it and polls a bucket with :meth:`S3Repository.list_objects`.

The workflow core computes an artifact's default key (``keyFormat`` is its business); the repository
puts ``keyPrefix`` in front of such keys, and stores explicit locations at exactly their key, as Argo
does. boto3 is imported on first use, so reading a configuration costs no start-up time. Every call
blocks: from an event loop, run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from engine.errors import ExecutorError, Problem, ProviderError, SpecError, UnsupportedError
from engine.spec.crd import GROUP

if TYPE_CHECKING:
    from engine.runtime.base import ArtifactRepository

JSONDict = dict[str, Any]

DEFAULT_REPOSITORY_ANNOTATION = "workflows.argoproj.io/default-artifact-repository"
# Our own group's spelling of the same annotation, for ConfigMaps written for sluice.dev.
SLUICE_DEFAULT_REPOSITORY_ANNOTATION = f"workflows.{GROUP}/default-artifact-repository"

ENV_REPOSITORY = "SLUICE_ARTIFACT_REPOSITORY"
ENV_ACCESS_KEY = "SLUICE_S3_ACCESS_KEY"
ENV_SECRET_KEY = "SLUICE_S3_SECRET_KEY"
ENV_SESSION_TOKEN = "SLUICE_S3_SESSION_TOKEN"

DEFAULT_ENDPOINT = "s3.amazonaws.com"

_S3_FIELDS = frozenset(
    {
        "bucket", "endpoint", "insecure", "region", "keyPrefix", "keyFormat", "accessKeySecret",
        "secretKeySecret", "sessionTokenSecret", "useSDKCreds", "createBucketIfNotPresent",
    }
)  # fmt: skip
# Argo fields we know but do not provide: refusing them beats storing unencrypted or unverified.
_UNSUPPORTED_S3_FIELDS = {
    "roleARN": "assuming a role (roleARN)",
    "encryptionOptions": "server-side encryption options (encryptionOptions)",
    "caSecret": "a custom certificate authority (caSecret)",
}
_OTHER_KINDS = ("gcs", "oss", "azure", "artifactory", "hdfs")
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_AWS_REGION = re.compile(r"^s3[.-](?:dualstack\.)?([a-z0-9-]+)\.amazonaws\.com$")


# ============================================================================================ config


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """One key of a Secret in the step's namespace, as Argo's ``accessKeySecret`` names it."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class S3Config:
    """An ``s3`` artifact repository, field for field Argo's (camelCase there, snake_case here)."""

    bucket: str
    endpoint: str = DEFAULT_ENDPOINT  # host[:port], no scheme
    insecure: bool = False  # http instead of https
    region: str | None = None
    key_prefix: str = ""
    # Argo's keyFormat, kept for the core that computes default keys; the repository never applies it.
    key_format: str | None = None
    access_key_secret: SecretKeyRef | None = None
    secret_key_secret: SecretKeyRef | None = None
    session_token_secret: SecretKeyRef | None = None
    use_sdk_creds: bool = False
    create_bucket: bool = False  # createBucketIfNotPresent
    object_locking: bool = False  # createBucketIfNotPresent.objectLocking

    def full_key(self, key: str) -> str:
        """``key`` with keyPrefix in front (the key a default-keyed artifact is stored at)."""
        prefix = self.key_prefix.strip("/")
        return f"{prefix}/{key.lstrip('/')}" if prefix else key

    def to_argo(self) -> JSONDict:
        """The configuration as Argo writes it, ``{"s3": {...}}``; :func:`parse_repository` reads it back."""
        s3: JSONDict = {"bucket": self.bucket, "endpoint": self.endpoint, "insecure": self.insecure}
        if self.region:
            s3["region"] = self.region
        if self.key_prefix:
            s3["keyPrefix"] = self.key_prefix
        if self.key_format:
            s3["keyFormat"] = self.key_format
        for name, ref in (
            ("accessKeySecret", self.access_key_secret),
            ("secretKeySecret", self.secret_key_secret),
            ("sessionTokenSecret", self.session_token_secret),
        ):
            if ref is not None:
                s3[name] = {"name": ref.name, "key": ref.key}
        if self.use_sdk_creds:
            s3["useSDKCreds"] = True
        if self.create_bucket:
            s3["createBucketIfNotPresent"] = {"objectLocking": True} if self.object_locking else {}
        return {"s3": s3}


@dataclass(frozen=True, slots=True)
class ArtifactRepositoryConfig:
    """One entry of an artifact repository ConfigMap."""

    s3: S3Config
    # The repository's archiveLogs default; None when the entry does not say.
    archive_logs: bool | None = None


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """Resolved secret values; never printed (repr hides them)."""

    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


def parse_repository_configmap(
    configmap: Mapping[str, Any], key: str | None = None
) -> ArtifactRepositoryConfig:
    """The repository at ``key`` of an artifact repository ConfigMap (a manifest dict).

    Without ``key`` the default-repository annotation names it; a workflow-controller ConfigMap without
    that annotation is read at its ``artifactRepository`` key, or inside its ``config`` key. Raises
    SpecError (one line naming the ConfigMap and the field path) for a malformed entry and
    UnsupportedError for a repository kind or an s3 field this runtime does not provide.
    """
    raw_meta = configmap.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    name = str(meta.get("name") or "?")
    namespace = meta.get("namespace")
    source = f"ConfigMap {namespace}/{name}" if namespace else f"ConfigMap {name}"
    raw_data = configmap.get("data")
    data: Mapping[str, Any] = raw_data if isinstance(raw_data, Mapping) else {}
    if key is None:
        raw_annotations = meta.get("annotations")
        annotations: Mapping[str, Any] = raw_annotations if isinstance(raw_annotations, Mapping) else {}
        key = annotations.get(DEFAULT_REPOSITORY_ANNOTATION) or annotations.get(
            SLUICE_DEFAULT_REPOSITORY_ANNOTATION
        )
        if not key:
            key = next((k for k in ("artifactRepository", "config") if k in data), None)
        if not key:
            raise SpecError(
                [
                    Problem(
                        "metadata.annotations",
                        f"no key given and no {DEFAULT_REPOSITORY_ANNOTATION} annotation",
                    )
                ],
                file=source,
            )
    path = f"data.{key}"
    if key not in data:
        raise SpecError([Problem(path, "no such key")], file=source)
    text = data[key]
    try:
        value = yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError as exc:
        why = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise SpecError([Problem(path, f"not valid YAML: {why}")], file=source) from exc
    return parse_repository(value, source=source, path=path)


def parse_repository(value: Any, *, source: str, path: str = "") -> ArtifactRepositoryConfig:
    """One artifact repository in Argo's shape (``{s3: {...}}``, optionally under ``artifactRepository``).

    ``source`` names where it came from in error messages, ``path`` is the field path of ``value``."""
    if isinstance(value, Mapping) and "artifactRepository" in value:
        value, path = value["artifactRepository"], _join(path, "artifactRepository")
    if not isinstance(value, Mapping):
        raise SpecError([Problem(path, "must be a mapping with an s3 block")], file=source)
    archive_logs = value.get("archiveLogs")
    if archive_logs is not None and not isinstance(archive_logs, bool):
        raise SpecError([Problem(_join(path, "archiveLogs"), "must be true or false")], file=source)
    if "s3" not in value:
        other = next((k for k in _OTHER_KINDS if k in value), None)
        if other:
            raise UnsupportedError(
                f"{source}: {_join(path, other)}: {other} artifact repositories are not supported; use s3"
            )
        raise SpecError([Problem(path, "no s3 block")], file=source)
    return ArtifactRepositoryConfig(
        s3=_parse_s3(value["s3"], source=source, path=_join(path, "s3")), archive_logs=archive_logs
    )


def _parse_s3(value: Any, *, source: str, path: str) -> S3Config:
    if not isinstance(value, Mapping):
        raise SpecError([Problem(path, "must be a mapping")], file=source)
    for name, what in _UNSUPPORTED_S3_FIELDS.items():
        if value.get(name):
            raise UnsupportedError(f"{source}: {_join(path, name)}: {what} is not supported")
    problems: list[Problem] = [
        Problem(_join(path, k), "unknown field")
        for k in value
        if k not in _S3_FIELDS and k not in _UNSUPPORTED_S3_FIELDS
    ]

    def text(name: str, *, required: bool = False) -> str | None:
        v = value.get(name)
        if v is None or v == "":
            if required:
                problems.append(Problem(_join(path, name), "required"))
            return None
        if not isinstance(v, str):
            problems.append(Problem(_join(path, name), "must be a string"))
            return None
        return v

    def flag(name: str) -> bool:
        v = value.get(name, False)
        if not isinstance(v, bool):
            problems.append(Problem(_join(path, name), "must be true or false"))
            return False
        return v

    def secret(name: str) -> SecretKeyRef | None:
        v = value.get(name)
        if v is None:
            return None
        where = _join(path, name)
        if not isinstance(v, Mapping):
            problems.append(Problem(where, "must be a mapping with name and key"))
            return None
        parts = []
        for part in ("name", "key"):
            s = v.get(part)
            if not isinstance(s, str) or not s:
                problems.append(Problem(f"{where}.{part}", "required"))
            parts.append(str(s or ""))
        return SecretKeyRef(*parts)

    bucket = text("bucket", required=True)
    endpoint = text("endpoint") or DEFAULT_ENDPOINT
    if "://" in endpoint or "/" in endpoint:
        problems.append(
            Problem(
                _join(path, "endpoint"), "give host[:port] without a scheme or path (insecure: true for http)"
            )
        )
    access, secret_ = secret("accessKeySecret"), secret("secretKeySecret")
    if (access is None) != (secret_ is None):
        missing = "secretKeySecret" if secret_ is None else "accessKeySecret"
        problems.append(Problem(_join(path, missing), "required with the other key secret"))
    create = value.get("createBucketIfNotPresent")
    object_locking = False
    if create is not None:
        if not isinstance(create, Mapping):
            problems.append(Problem(_join(path, "createBucketIfNotPresent"), "must be a mapping"))
        else:
            locking = create.get("objectLocking", False)
            if not isinstance(locking, bool):
                problems.append(
                    Problem(_join(path, "createBucketIfNotPresent.objectLocking"), "must be true or false")
                )
            object_locking = locking is True
    config = S3Config(
        bucket=bucket or "",
        endpoint=endpoint,
        insecure=flag("insecure"),
        region=text("region"),
        key_prefix=text("keyPrefix") or "",
        key_format=text("keyFormat"),
        access_key_secret=access,
        secret_key_secret=secret_,
        session_token_secret=secret("sessionTokenSecret"),
        use_sdk_creds=flag("useSDKCreds"),
        create_bucket=isinstance(create, Mapping),
        object_locking=object_locking,
    )
    if problems:
        raise SpecError(problems, file=source)
    return config


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ============================================================================================ pod env


def executor_env(
    config: S3Config | ArtifactRepositoryConfig, credentials_secret: str | None = None
) -> list[JSONDict]:
    """The env entries that give a step pod's ``init`` and ``wait`` containers the repository.

    ``config`` is what :func:`parse_repository_configmap` returned, or its ``s3`` part.

    ``credentials_secret`` is the Secret, in the step's namespace, holding the keys that the config's
    accessKeySecret/secretKeySecret/sessionTokenSecret name; None means the Secrets those name. The
    values are ``secretKeyRef`` references: no secret value appears in the pod spec. Pass
    ``tuple(executor_env(...))`` as ``PodSettings.executor_env``; :func:`repository_from_env` reads it
    inside the pod.
    """
    if isinstance(config, ArtifactRepositoryConfig):
        config = config.s3
    env: list[JSONDict] = [
        {"name": ENV_REPOSITORY, "value": json.dumps(config.to_argo(), separators=(",", ":"), sort_keys=True)}
    ]
    for name, ref in (
        (ENV_ACCESS_KEY, config.access_key_secret),
        (ENV_SECRET_KEY, config.secret_key_secret),
        (ENV_SESSION_TOKEN, config.session_token_secret),
    ):
        if ref is not None:
            env.append(
                {
                    "name": name,
                    "valueFrom": {"secretKeyRef": {"name": credentials_secret or ref.name, "key": ref.key}},
                }
            )
    return env


def repository_from_env(environ: Mapping[str, str]) -> S3Repository | None:
    """The repository :func:`executor_env` described; None when the pod was given none."""
    raw = environ.get(ENV_REPOSITORY)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExecutorError(f"${ENV_REPOSITORY} is not valid JSON: {exc}") from exc
    config = parse_repository(value, source=f"${ENV_REPOSITORY}").s3
    credentials = S3Credentials()
    if config.access_key_secret is not None:
        missing = [n for n in (ENV_ACCESS_KEY, ENV_SECRET_KEY) if not environ.get(n)]
        if missing:
            raise ExecutorError(f"the artifact repository needs credentials but ${missing[0]} is not set")
        credentials = S3Credentials(
            access_key=environ[ENV_ACCESS_KEY],
            secret_key=environ[ENV_SECRET_KEY],
            session_token=environ.get(ENV_SESSION_TOKEN) or None,
        )
    return S3Repository(config, credentials)


# ============================================================================================ listing


@dataclass(frozen=True, slots=True)
class S3Object:
    """One object of a bucket listing (ListObjectsV2), as the S3 event source compares listings."""

    key: str
    etag: str  # without the double quotes S3 puts around it
    size: int
    last_modified: datetime  # in UTC


def open_bucket(
    *,
    bucket: str,
    endpoint: str = DEFAULT_ENDPOINT,
    insecure: bool = False,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
) -> S3Repository:
    """A repository on ``bucket`` with the given credentials, for callers that list or read a bucket
    rather than store artifacts in it. Without keys, boto3's own credential chain applies."""
    return S3Repository(
        S3Config(bucket=bucket, endpoint=endpoint, insecure=insecure, region=region),
        S3Credentials(access_key=access_key, secret_key=secret_key, session_token=session_token),
    )


# ============================================================================================ repository


@dataclass(frozen=True, slots=True)
class _Target:
    bucket: str
    endpoint: str
    insecure: bool
    region: str | None
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def endpoint_url(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.endpoint}"

    def location(self) -> JSONDict:
        return {
            "s3": {
                "bucket": self.bucket,
                "endpoint": self.endpoint,
                "insecure": self.insecure,
                "key": self.key,
            }
        }


class S3Repository:
    """An ``ArtifactRepository`` on an S3 bucket (AWS, MinIO, Ceph... anything speaking S3).

    A file is one object; a directory (``archive: {none: {}}``) is one object per file under
    ``key/``, as Argo stores it (empty directories are not kept). Locations are Argo's:
    ``{"s3": {"bucket", "endpoint", "insecure", "key"}}``; one that omits bucket or endpoint means this
    repository's. Failures raise ProviderError (UnsupportedError for a location this repository cannot
    serve) with a one-line message.
    """

    def __init__(self, config: S3Config, credentials: S3Credentials | None = None) -> None:
        self.config = config
        self._credentials = credentials or S3Credentials()
        self._clients: dict[tuple[str, bool, str | None], Any] = {}
        self._bucket_ready = not config.create_bucket

    # ------------------------------------------------------------------------------- the protocol

    def put(self, key: str, source: Path) -> dict[str, Any]:
        """Store ``source`` at the repository's bucket under keyPrefix + ``key``."""
        return self.put_at({"s3": {"key": self.config.full_key(key)}}, source)

    def put_at(self, location: Mapping[str, Any], source: Path) -> dict[str, Any]:
        """Store ``source`` at exactly ``location`` (an artifact's explicit ``s3`` location)."""
        target = self._target(location)
        client = self._client(target)
        source = Path(source)
        with _s3_errors(target):
            self._ensure_bucket(client, target)
            if source.is_dir():
                for path in _files_under(source):
                    rel = path.relative_to(source).as_posix()
                    client.upload_file(str(path), target.bucket, f"{target.key.rstrip('/')}/{rel}")
            else:
                client.upload_file(str(source), target.bucket, target.key)
        return target.location()

    def get(self, location: Mapping[str, Any], dest: Path) -> None:
        target = self._target(location)
        client = self._client(target)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _s3_errors(target):
            try:
                client.download_file(target.bucket, target.key, str(dest))
                return
            except Exception as exc:
                if _code(exc) not in _MISSING_CODES:
                    raise
            # No object at the key itself: a directory stored as one object per file?
            keys = self._keys_under(client, target)
            if not keys:
                raise ProviderError(f"artifact not found: {target.url}")
            prefix = target.key.rstrip("/") + "/"
            for key in keys:
                rel = PurePosixPath(key[len(prefix) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise ProviderError(
                        f"{target.url}: refusing object {key!r} (it would land outside {dest})"
                    )
                out = dest.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(target.bucket, key, str(out))

    def delete(self, location: Mapping[str, Any]) -> None:
        target = self._target(location)
        client = self._client(target)
        with _s3_errors(target):
            keys = [target.key, *self._keys_under(client, target)]
            for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                client.delete_objects(Bucket=target.bucket, Delete={"Objects": batch, "Quiet": True})

    # ------------------------------------------------------------------------------- listing

    def list_objects(self, prefix: str = "", *, limit: int | None = None) -> list[S3Object]:
        """Every object of the repository's bucket whose key starts with ``prefix``, in key order.

        ``prefix`` is taken as given (keyPrefix is not put in front). More than ``limit`` objects raise
        ProviderError instead of growing without bound; so do an unreachable endpoint, a missing bucket
        and rejected credentials, each with a one-line message.
        """
        c = self.config
        target = _Target(
            bucket=c.bucket, endpoint=c.endpoint, insecure=c.insecure, region=c.region, key=prefix
        )
        client = self._client(target)
        found: list[S3Object] = []
        with _s3_errors(target, credentials="the access key and secret key"):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=c.bucket, Prefix=prefix):
                for o in page.get("Contents") or ():
                    if limit is not None and len(found) >= limit:
                        raise ProviderError(
                            f"{target.url}: more than {limit:,} objects under this prefix; narrow it"
                        )
                    modified = o["LastModified"]
                    if modified.tzinfo is None:  # botocore parses with a zone; guard a naive value anyway
                        modified = modified.replace(tzinfo=UTC)
                    found.append(
                        S3Object(
                            key=o["Key"],
                            etag=str(o.get("ETag") or "").strip('"'),
                            size=int(o.get("Size") or 0),
                            last_modified=modified.astimezone(UTC),
                        )
                    )
        return found

    # ------------------------------------------------------------------------------- helpers

    def _target(self, location: Mapping[str, Any]) -> _Target:
        if len(location) != 1:
            raise ProviderError(f"an artifact location has exactly one key, got {sorted(location)}")
        kind, spec = next(iter(location.items()))
        if kind != "s3":
            raise UnsupportedError(f"{kind} artifacts are not supported: the artifact repository is s3")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("key"), str) or not spec["key"]:
            raise ProviderError("s3 location without a key")
        c = self.config
        for name, ours in (
            ("accessKeySecret", c.access_key_secret),
            ("secretKeySecret", c.secret_key_secret),
        ):
            ref = spec.get(name)
            if isinstance(ref, Mapping) and (
                ours is None or (ref.get("name"), ref.get("key")) != (ours.name, ours.key)
            ):
                raise UnsupportedError(
                    f"s3 artifact {spec['key']!r} names its own {name} {ref.get('name')!r}: only the artifact"
                    " repository's credentials are available"
                )
        endpoint = str(spec.get("endpoint") or c.endpoint)
        ours_endpoint = endpoint == c.endpoint
        insecure = spec.get("insecure")
        region = spec.get("region")
        return _Target(
            bucket=str(spec.get("bucket") or c.bucket),
            endpoint=endpoint,
            insecure=bool(insecure) if insecure is not None else (c.insecure if ours_endpoint else False),
            region=str(region) if region else (c.region if ours_endpoint else None),
            key=str(spec["key"]),
        )

    def _client(self, target: _Target) -> Any:
        ident = (target.endpoint, target.insecure, target.region)
        client = self._clients.get(ident)
        if client is None:
            import boto3.session
            from botocore.config import Config

            host = target.endpoint.split(":")[0]
            match = _AWS_REGION.match(host)
            region = target.region or (match.group(1) if match else "us-east-1")
            # Path-style for everything but AWS itself: MinIO and most self-hosted stores have no
            # per-bucket DNS names.
            style = "virtual" if host.endswith(".amazonaws.com") else "path"
            creds = self._credentials
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=target.endpoint_url,
                region_name=region,
                aws_access_key_id=creds.access_key,
                aws_secret_access_key=creds.secret_key,
                aws_session_token=creds.session_token,
                config=Config(
                    s3={"addressing_style": style},
                    signature_version="s3v4",
                    connect_timeout=10,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
            self._clients[ident] = client
        return client

    def _ensure_bucket(self, client: Any, target: _Target) -> None:
        """createBucketIfNotPresent: make the repository's bucket on the first put."""
        if (
            self._bucket_ready
            or target.bucket != self.config.bucket
            or target.endpoint != self.config.endpoint
        ):
            return
        try:
            client.head_bucket(Bucket=target.bucket)
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            args: JSONDict = {"Bucket": target.bucket}
            region = client.meta.region_name
            if region and region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            if self.config.object_locking:
                args["ObjectLockEnabledForBucket"] = True
            try:
                client.create_bucket(**args)
            except Exception as exc2:
                if _code(exc2) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_ready = True

    @staticmethod
    def _keys_under(client: Any, target: _Target) -> list[str]:
        prefix = target.key.rstrip("/") + "/"
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents") or () if not o["Key"].endswith("/")]
        return keys


def _files_under(root: Path) -> list[Path]:
    """Regular files below ``root``; symlinks are not followed (they could point anywhere)."""
    out: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return sorted(out)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str((response.get("Error") or {}).get("Code") or "")
    return ""


@contextlib.contextmanager
def _s3_errors(target: _Target, *, credentials: str = "the repository's credentials") -> Iterator[None]:
    """boto3's exceptions as ProviderError with one line saying what failed where; an access denial
    says to check ``credentials``."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    try:
        yield
    except ClientError as exc:
        raise ProviderError(_client_error(exc, target, credentials)) from exc
    except Boto3Error as exc:
        # An upload failure wraps the ClientError that says why.
        cause = exc.__context__
        if isinstance(cause, ClientError):
            raise ProviderError(_client_error(cause, target, credentials)) from exc
        raise ProviderError(f"{target.url}: {_one_line(exc)}") from exc
    except NoCredentialsError as exc:
        raise ProviderError(
            f"{target.url}: no S3 credentials (the repository sets no accessKeySecret and none were found)"
        ) from exc
    except EndpointConnectionError as exc:
        raise ProviderError(f"cannot reach S3 at {target.endpoint_url}: {_one_line(exc)}") from exc
    except BotoCoreError as exc:
        raise ProviderError(f"{target.url}: {_one_line(exc)}") from exc


def _client_error(exc: Any, target: _Target, credentials: str = "the repository's credentials") -> str:
    code = _code(exc)
    message = str((exc.response.get("Error") or {}).get("Message") or "")
    if code == "NoSuchBucket":
        return f"s3 bucket {target.bucket!r} does not exist at {target.endpoint}"
    if code in _MISSING_CODES:
        return f"artifact not found: {target.url}"
    if code in _AUTH_CODES:
        return f"{target.url}: access denied by {target.endpoint} ({code}): check {credentials}"
    return f"{target.url}: {code or 'error'}" + (f": {_one_line(message)}" if message else "")


def _one_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0] if lines else type(value).__name__


if TYPE_CHECKING:

    def _implements_artifact_repository(r: S3Repository) -> ArtifactRepository:
        return r


__all__ = [
    "DEFAULT_REPOSITORY_ANNOTATION",
    "ENV_ACCESS_KEY",
    "ENV_REPOSITORY",
    "ENV_SECRET_KEY",
    "ENV_SESSION_TOKEN",
    "ArtifactRepositoryConfig",
    "S3Config",
    "S3Credentials",
    "S3Object",
    "S3Repository",
    "SecretKeyRef",
    "executor_env",
    "open_bucket",
    "parse_repository",
    "parse_repository_configmap",
    "repository_from_env",
]
