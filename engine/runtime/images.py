"""Image -> entrypoint table: what a container without ``command`` runs.

The local runtime records a step's ``image`` but runs its command on the host, and the Kubernetes
runtime wraps a step's command to capture its outputs; both need to know what an image runs when the
container gives no ``command``. The local step executor (``engine.runtime.local.executor``) and the
Kubernetes pod builder (``engine.runtime.kubernetes.pods``) ask :class:`ImageTable`; Argo's emissary
executor needs the same index (its ``images`` controller setting), for the same reason.

Kubernetes' rule applies: ``command`` replaces the image's ENTRYPOINT, ``args`` replace its CMD, and
without ``command`` the process is ``ENTRYPOINT + (args if given else CMD)``.

The built-in entries state what the public images run. Users add or override entries in
``$SLUICE_HOME/images.yaml``::

    images:                     # the top-level key is optional
      my/tool:1.2:
        entrypoint: [/usr/local/bin/tool]
        cmd: [--help]
      other/image: [other]      # a bare list is the entrypoint

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, SpecError


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """What an image runs by default: its ENTRYPOINT and CMD."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    def argv(self, args: Sequence[str] | None) -> list[str]:
        return [*self.entrypoint, *(self.cmd if args is None else args)]


# Facts about the images as published (Dockerfile ENTRYPOINT / CMD).
_BUILTIN: dict[str, ImageEntry] = {
    # Argo's test image: a single static binary at / whose subcommands are echo/cat/sleep/exit.
    "argoproj/argosay:v2": ImageEntry(entrypoint=("argosay",)),
    # Argo's older test image: ubuntu:14.04 with cowsay installed; no ENTRYPOINT, CMD ["cowsay"],
    # so ``args`` replace ``cowsay`` rather than being passed to it.
    "argoproj/argosay:v1": ImageEntry(cmd=("cowsay",)),
    "docker/whalesay": ImageEntry(entrypoint=("cowsay",)),
    "busybox": ImageEntry(cmd=("sh",)),
    "alpine": ImageEntry(cmd=("/bin/sh",)),
    "debian": ImageEntry(cmd=("bash",)),
    "ubuntu": ImageEntry(cmd=("/bin/bash",)),
    "python": ImageEntry(cmd=("python3",)),
    "golang": ImageEntry(cmd=("bash",)),
    "node": ImageEntry(entrypoint=("docker-entrypoint.sh",), cmd=("node",)),
    "curlimages/curl": ImageEntry(entrypoint=("curl",)),
    "stedolan/jq": ImageEntry(entrypoint=("jq",)),
    "nginx": ImageEntry(cmd=("nginx", "-g", "daemon off;")),
    "influxdb": ImageEntry(cmd=("influxd",)),
    "alpine/git": ImageEntry(entrypoint=("git",)),
}

_REGISTRY_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def _candidates(image: str) -> list[str]:
    """Lookup keys for ``image``, most specific first: ``repo:tag``, then ``repo``."""
    name = image.strip()
    if "@" in name:  # a digest pins a version we cannot know: fall back to the repository
        name = name.split("@", 1)[0]
    for prefix in _REGISTRY_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name.startswith("library/"):
        name = name[len("library/") :]
    repo, tag = name, "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
    keys = [f"{repo}:{tag}", repo]
    first = repo.split("/", 1)[0]
    if "/" in repo and ("." in first or ":" in first or first == "localhost"):
        # another registry (quay.io/argoproj/argosay): try the same repository path without it
        bare = repo.split("/", 1)[1]
        keys += [f"{bare}:{tag}", bare]
    return keys


class ImageTable:
    """Image name -> :class:`ImageEntry`, built-in entries overridden by configured ones."""

    def __init__(self, entries: Mapping[str, ImageEntry] | None = None, *, builtin: bool = True) -> None:
        self._entries: dict[str, ImageEntry] = dict(_BUILTIN) if builtin else {}
        if entries:
            self._entries.update(entries)

    @classmethod
    def load(cls, path: Path) -> ImageTable:
        """The built-in table extended by the YAML file at ``path`` when it exists."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError([Problem("", f"invalid YAML: {exc}")], file=str(path)) from exc
        return cls(parse_entries(doc, file=str(path)))

    def lookup(self, image: str) -> ImageEntry | None:
        for key in _candidates(image):
            entry = self._entries.get(key)
            if entry is not None:
                return entry
        return None

    def argv(self, image: str, args: Sequence[str] | None) -> list[str] | None:
        """What a container of ``image`` without ``command`` runs, or None when unknown/empty."""
        entry = self.lookup(image)
        if entry is None:
            return None
        argv = entry.argv(args)
        return argv or None


def parse_entries(doc: Any, *, file: str | None = None) -> dict[str, ImageEntry]:
    if doc is None:
        return {}
    if isinstance(doc, dict) and isinstance(doc.get("images"), dict):
        doc = doc["images"]
    if not isinstance(doc, dict):
        raise SpecError([Problem("images", "must be a mapping of image name to entrypoint")], file=file)
    out: dict[str, ImageEntry] = {}
    problems: list[Problem] = []
    for name, value in doc.items():
        path = f"images.{name}"
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[str(name)] = ImageEntry(entrypoint=tuple(value))
        elif isinstance(value, dict):
            entry_ep = value.get("entrypoint") or []
            entry_cmd = value.get("cmd") or []
            bad = [k for k in value if k not in ("entrypoint", "cmd")]
            if bad:
                problems.append(Problem(path, f"unknown field {bad[0]!r} (expected entrypoint, cmd)"))
                continue
            if not all(isinstance(v, str) for v in [*entry_ep, *entry_cmd]) or not isinstance(entry_ep, list):
                problems.append(Problem(path, "entrypoint and cmd must be lists of strings"))
                continue
            out[str(name)] = ImageEntry(entrypoint=tuple(entry_ep), cmd=tuple(entry_cmd))
        else:
            problems.append(Problem(path, "must be a list of strings or {entrypoint, cmd}"))
    if problems:
        raise SpecError(problems, file=file)
    return out
