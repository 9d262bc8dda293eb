"""Image -> entrypoint table for the local runtime, and host stand-ins for tiny test images.

The local runtime records a step's ``image`` but runs its command on the host, so a container that
gives no ``command`` needs to know what the image would have run. The local step executor
(``engine.runtime.local.executor``) asks :class:`ImageTable` for that; Argo's emissary executor needs
the same index (its ``images`` controller setting), for the same reason.

Kubernetes' rule applies: ``command`` replaces the image's ENTRYPOINT, ``args`` replace its CMD, and
without ``command`` the process is ``ENTRYPOINT + (args if given else CMD)``.

The built-in entries state what the public images run. Users add or override entries in
``$SLUICE_HOME/images.yaml``::

    images:                     # the top-level key is optional
      my/tool:1.2:
        entrypoint: [/usr/local/bin/tool]
        cmd: [--help]
      other/image: [other]      # a bare list is the entrypoint

:func:`install_shims` writes small host stand-ins for ``argosay`` and ``cowsay`` (the programs the
Argo example corpus's test images provide) into the executor's private bin directory, used only
when the host has no program of that name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


# --------------------------------------------------------------------------------------------------
# host stand-ins

_ARGOSAY = r"""#!/bin/sh
# Host stand-in for Argo's argosay test image (written by Sluicegate's local runtime).
# argosay [echo [text [file]] | cat file... | sleep d | exit [code] | assert_contains file text | sh file]
set -eu
[ $# -eq 0 ] && set -- echo
cmd=$1; shift
case "$cmd" in
  echo)
    case $# in
      0) echo "hello argo" ;;
      1) printf '%s\n' "$1" ;;
      2) mkdir -p "$(dirname "$2")"; printf '%s\n' "$1" > "$2" ;;
      *) exit 1 ;;
    esac ;;
  cat) cat "$@" ;;
  sleep)
    d=$1
    case "$d" in
      *ms) d=$(awk "BEGIN{print ${d%ms}/1000}") ;;
    esac
    sleep "$d" ;;
  exit) exit "${1:-0}" ;;
  assert_contains) grep -F -- "$2" "$1" ;;
  sh) sh "$@" ;;
  *) exit 1 ;;
esac
"""

_COWSAY = r"""#!/bin/sh
# Host stand-in for cowsay (written by Sluicegate's local runtime).
if [ $# -gt 0 ]; then msg="$*"; else msg=$(cat); fi
n=$(printf '%s' "$msg" | wc -c)
line=$(printf '%*s' "$((n + 2))" '' | tr ' ' '-')
printf ' %s\n< %s >\n %s\n' "$(printf '%s' "$line" | tr '-' '_')" "$msg" "$line"
cat <<'EOF'
        \   ^__^
         \  (oo)\_______
            (__)\       )\/\
                ||----w |
                ||     ||
EOF
"""

SHIMS: dict[str, str] = {"argosay": _ARGOSAY, "cowsay": _COWSAY}


def install_shims(bin_dir: Path, host_path: str) -> list[str]:
    """Write stand-ins and ``python``/``python3`` aliases the host lacks into ``bin_dir``.

    Returns the names written. ``bin_dir`` goes last on a step's PATH, so a real program of the
    same name always wins.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, text in SHIMS.items():
        target = bin_dir / name
        if shutil.which(name, path=host_path):
            _remove(target)
            continue
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            tmp = bin_dir / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o755)
            os.replace(tmp, target)
        written.append(name)
    # Manifests say ``python`` or ``python3`` interchangeably; hosts often have only one of them.
    for alias, real in (("python", "python3"), ("python3", "python")):
        target = bin_dir / alias
        real_path = shutil.which(real, path=host_path)
        if shutil.which(alias, path=host_path) or not real_path:
            _remove(target)
            continue
        if not (target.is_symlink() and os.readlink(target) == real_path):
            _remove(target)
            with contextlib.suppress(FileExistsError):  # another engine on this home was faster
                target.symlink_to(real_path)
        written.append(alias)
    return written


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or path.exists():
            path.unlink()
    except OSError:
        pass
