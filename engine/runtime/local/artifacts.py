"""Artifacts for the local runtime: a directory repository, archiving, and input artifact loading.

:class:`LocalDirRepository` is the local runtime's default ``ArtifactRepository`` (objects are files
under one directory, located as ``{"local": {"key": k}}``; key-only ``{"s3": {"key": k}}`` locations
resolve to it too, as Argo resolves key-only artifacts to the default repository). The local step
executor (``engine.runtime.local.executor``) calls :func:`pack_output` and :func:`load_input` from a
worker thread: everything here is blocking file and network I/O.

Formats follow Argo: outputs are tar+gzip unless the template says ``archive: {none: {}}`` (the raw
file) or ``zip: {}``; a tar holds one entry, the file or directory under its base name. Inputs are
sniffed: a gzip'd tar or a zip is unpacked (unless the artifact says ``archive: {none: {}}``), and
when it holds exactly one top-level entry that entry becomes the artifact's path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from engine.errors import ExecutorError, ProviderError, UnsupportedError

if TYPE_CHECKING:
    from engine.runtime.base import ArtifactRepository

# Artifact dict keys that are not a location.
_NON_LOCATION = frozenset(
    {
        "name", "path", "mode", "from", "fromExpression", "optional", "subPath", "recurseMode",
        "archive", "archiveLogs", "globalName", "artifactGC", "deleted", "url", "value",
    }
)  # fmt: skip


def location_of(artifact: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The artifact's one location, e.g. ``("s3", {"key": "x"})``; None when it has none."""
    for key, value in artifact.items():
        if key not in _NON_LOCATION and isinstance(value, dict):
            return key, value
    return None


class LocalDirRepository:
    """An artifact repository that is a directory; keys are relative paths inside it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not key.strip("/"):
            raise ProviderError(f"invalid artifact key {key!r}")
        p = PurePosixPath(key)
        if p.is_absolute() or ".." in p.parts or "\\" in key:
            raise ProviderError(f"invalid artifact key {key!r}: must be a relative path without '..'")
        return self.root.joinpath(*p.parts)

    def _key(self, location: Mapping[str, Any]) -> str:
        if len(location) != 1:
            raise ProviderError(f"an artifact location has exactly one key, got {sorted(location)}")
        kind, spec = next(iter(location.items()))
        if not isinstance(spec, Mapping) or "key" not in spec:
            raise ProviderError(f"{kind} location without a key")
        if kind != "local" and set(spec) - {"key"}:
            # A full s3/gcs/... location names another store; only key-only ones mean "ours".
            raise UnsupportedError(
                f"{kind} artifact with its own {', '.join(sorted(set(spec) - {'key'}))}: "
                "the local repository serves key-only locations"
            )
        return str(spec["key"])

    def put(self, key: str, source: Path) -> dict[str, Any]:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        _remove(tmp)
        if Path(source).is_dir():
            shutil.copytree(source, tmp, symlinks=True)
            _remove(dest)
            os.replace(tmp, dest)
        else:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)  # readers never see a half-written object
        return {"local": {"key": key}}

    def get(self, location: Mapping[str, Any], dest: Path) -> None:
        src = self._path(self._key(location))
        if src.is_dir():
            _remove(dest)
            shutil.copytree(src, dest, symlinks=True)
        elif src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        else:
            raise ProviderError(f"artifact not found: {location}")

    def delete(self, location: Mapping[str, Any]) -> None:
        _remove(self._path(self._key(location)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --------------------------------------------------------------------------------------------------
# outputs


def pack_output(source: Path, work: Path, name: str, archive: Mapping[str, Any] | None) -> Path:
    """The file (or, with ``archive: {none: {}}``, the file or directory) to store for ``source``."""
    if archive and "none" in archive:
        return source
    work.mkdir(parents=True, exist_ok=True)
    if archive and "zip" in archive:
        out = work / f"{name}.zip"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            if source.is_dir():
                zf.write(source, source.name)
                for p in sorted(source.rglob("*")):
                    zf.write(p, f"{source.name}/{p.relative_to(source).as_posix()}")
            else:
                zf.write(source, source.name)
        return out
    level = 6
    tar_opts = (archive or {}).get("tar") or {}
    if isinstance(tar_opts, Mapping) and tar_opts.get("compressionLevel") is not None:
        level = max(0, min(9, int(tar_opts["compressionLevel"])))
    out = work / f"{name}.tgz"
    with tarfile.open(out, "w:gz", compresslevel=level) as tf:
        tf.add(source, arcname=source.name)
    return out


# --------------------------------------------------------------------------------------------------
# inputs

Fetcher = Callable[[Mapping[str, Any], Path], None]


def load_input(
    artifact: Mapping[str, Any],
    dest: Path,
    *,
    staging: Path,
    repository_get: Fetcher,
    secret: Callable[[str, str], str | None],
) -> bool:
    """Materialise one input artifact at ``dest``; False when it is optional and unavailable.

    Raises ExecutorError (the node then ends in Error) when a non-optional artifact cannot be loaded.
    """
    name = str(artifact.get("name", "artifact"))
    optional = bool(artifact.get("optional"))
    loc = location_of(artifact)
    try:
        if loc is None:
            raise ExecutorError(f"input artifact {name!r} has no location")
        kind, spec = loc
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
        fetched = staging / "object"
        if kind == "raw":
            fetched.write_text(str(spec.get("data", "")), encoding="utf-8")
        elif kind == "http":
            _fetch_http(spec, fetched, secret)
        elif kind == "git":
            _fetch_git(spec, fetched)
        else:
            repository_get({kind: spec}, fetched)
        unpack = not (isinstance(artifact.get("archive"), Mapping) and "none" in artifact["archive"])
        source = _unpacked(fetched, staging / "unpacked") if unpack and kind != "git" else fetched
        sub = artifact.get("subPath")
        if sub:
            source = _inside(source, str(sub), name)
        _place(source, dest)
        _apply_mode(dest, artifact.get("mode"), bool(artifact.get("recurseMode")))
        return True
    except Exception as exc:
        if optional:
            return False
        if isinstance(exc, ExecutorError):
            raise
        raise ExecutorError(f"failed to load input artifact {name!r}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpacked(fetched: Path, into: Path) -> Path:
    if fetched.is_dir():
        return fetched
    with open(fetched, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        try:
            with tarfile.open(fetched, "r:gz") as tf:
                into.mkdir(parents=True, exist_ok=True)
                tf.extractall(into, filter="data")
        except tarfile.FilterError as exc:
            shutil.rmtree(into, ignore_errors=True)
            raise ExecutorError(f"refusing to unpack: {exc}") from exc
        except (tarfile.TarError, EOFError, OSError):
            shutil.rmtree(into, ignore_errors=True)
            return fetched  # a gzip'd file that is not a tar stays as it is
    elif head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(fetched) as zf:
                into.mkdir(parents=True, exist_ok=True)
                zf.extractall(into)
        except (zipfile.BadZipFile, OSError):
            shutil.rmtree(into, ignore_errors=True)
            return fetched
    else:
        return fetched
    entries = list(into.iterdir())
    return entries[0] if len(entries) == 1 else into


def _inside(source: Path, sub: str, name: str) -> Path:
    parts = PurePosixPath(sub).parts
    if PurePosixPath(sub).is_absolute() or ".." in parts:
        raise ExecutorError(f"input artifact {name!r}: subPath {sub!r} must be relative without '..'")
    target = source.joinpath(*parts)
    if not target.exists():
        raise ExecutorError(f"input artifact {name!r}: subPath {sub!r} not found in the artifact")
    return target


def _place(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        _remove(dest)
    shutil.move(str(source), str(dest))


def _apply_mode(dest: Path, mode: Any, recurse: bool) -> None:
    if mode is None:
        return
    bits = int(mode)
    os.chmod(dest, bits)
    if recurse and dest.is_dir():
        for p in dest.rglob("*"):
            if not p.is_symlink():
                os.chmod(p, bits)


def _fetch_http(spec: Mapping[str, Any], dest: Path, secret: Callable[[str, str], str | None]) -> None:
    url = spec.get("url")
    if not url:
        raise ExecutorError("http artifact without url")
    req = urllib.request.Request(str(url))
    for h in spec.get("headers") or []:
        req.add_header(str(h.get("name")), str(h.get("value", "")))
    auth = spec.get("auth") or {}
    basic = auth.get("basicAuth") if isinstance(auth, Mapping) else None
    if basic:
        import base64

        user = _secret_value(basic.get("usernameSecret"), secret) or ""
        password = _secret_value(basic.get("passwordSecret"), secret) or ""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        raise ProviderError(f"GET {url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ProviderError(f"GET {url}: {exc}") from exc


def _secret_value(ref: Any, secret: Callable[[str, str], str | None]) -> str | None:
    if not isinstance(ref, Mapping):
        return None
    return secret(str(ref.get("name", "")), str(ref.get("key", "")))


def _fetch_git(spec: Mapping[str, Any], dest: Path) -> None:
    repo = spec.get("repo")
    if not repo:
        raise ExecutorError("git artifact without repo")
    if any(spec.get(k) for k in ("usernameSecret", "passwordSecret", "sshPrivateKeySecret")):
        raise UnsupportedError("git artifacts with credentials are not supported by the local runtime")
    git = shutil.which("git")
    if not git:
        raise UnsupportedError("git artifacts need git on the host")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "GIT_TERMINAL_PROMPT": "0",
    }
    depth = spec.get("depth")
    clone = [git, "clone", "--quiet"]
    if depth:
        clone += ["--depth", str(int(depth))]
    if spec.get("branch"):
        clone += ["--branch", str(spec["branch"])]
    if spec.get("singleBranch"):
        clone.append("--single-branch")
    clone += ["--", str(repo), str(dest)]
    _git(clone, env)
    revision = spec.get("revision")
    if revision:
        try:
            _git([git, "-C", str(dest), "checkout", "--quiet", str(revision)], env)
        except ProviderError:
            fetch = [git, "-C", str(dest), "fetch", "--quiet"]
            if depth:
                fetch += ["--depth", str(int(depth))]
            _git([*fetch, "origin", str(revision)], env)
            _git([git, "-C", str(dest), "checkout", "--quiet", "FETCH_HEAD"], env)
    if not spec.get("disableSubmodules") and (dest / ".gitmodules").exists():
        _git([git, "-C", str(dest), "submodule", "update", "--quiet", "--init", "--recursive"], env)


def _git(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False
    )
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise ProviderError(f"{' '.join(argv[1:3])} failed: {err}")


if TYPE_CHECKING:

    def _implements_artifact_repository(r: LocalDirRepository) -> ArtifactRepository:
        return r
