"""Artifact handling shared by both runtimes: locations, output archiving and input loading.

The local step executor (``engine.runtime.local.executor``) and the Kubernetes executor containers
(``engine.runtime.kubernetes.executor``) call :func:`pack_output` before putting an output into an
artifact repository and :func:`load_input` to materialise an input artifact at its path. Everything
here is blocking file and network I/O: call it from a worker thread inside an event loop.

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
from typing import Any

from engine.errors import ExecutorError, ProviderError, UnsupportedError

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


def remove_path(path: Path) -> None:
    """Remove a file, a symlink or a whole directory; a missing path is not an error."""
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
        remove_path(dest)
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
        raise UnsupportedError("git artifacts with credentials are not supported yet")
    git = shutil.which("git")
    if not git:
        raise UnsupportedError("git artifacts need the git program, which is not installed here")
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
