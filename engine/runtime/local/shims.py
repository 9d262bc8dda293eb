"""Host stand-ins for the tiny programs of Argo's test images, for the local runtime.

:func:`install_shims` writes small host stand-ins for ``argosay`` and ``cowsay`` (the programs the
Argo example corpus's test images provide) into the local executor's private bin directory, used only
when the host has no program of that name. Called by ``engine.runtime.local.executor``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

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
