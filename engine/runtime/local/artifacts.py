"""The local runtime's artifact repository: a directory.

:class:`LocalDirRepository` is the local runtime's default ``ArtifactRepository`` (objects are files
under one directory, located as ``{"local": {"key": k}}``; key-only ``{"s3": {"key": k}}`` locations
resolve to it too, as Argo resolves key-only artifacts to the default repository). Archiving outputs
and loading inputs is shared with the Kubernetes runtime, in :mod:`engine.runtime.artifacts`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from engine.errors import ProviderError, UnsupportedError
from engine.runtime.artifacts import remove_path as _remove

if TYPE_CHECKING:
    from engine.runtime.base import ArtifactRepository


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


if TYPE_CHECKING:

    def _implements_artifact_repository(r: LocalDirRepository) -> ArtifactRepository:
        return r
