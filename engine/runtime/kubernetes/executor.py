"""The executor containers of a step pod: ``sluice executor init``, ``wait`` and ``http``.

The pod builder (``pods.py``) puts both into every step pod with the step described as JSON in
``$SLUICE_STEP`` (:func:`~engine.runtime.kubernetes.pods.step_document`); the CLI (``engine.cli.main``)
calls :func:`run_init`, :func:`run_wait` and :func:`run_http`; the operator calls :func:`parse_outputs` on
the ``wait`` container's log once the pod has ended. See this package's docstring for the capture design.

``init`` stages what the template's containers need in the pod's shared directory (``$SLUICE_VAR_DIR``,
default ``/var/run/sluice``): the ``sluice-run`` wrapper, a script template's source, and the input
artifacts. ``wait`` waits for the exit codes ``sluice-run`` records, then builds the step's outputs by the
local runtime's rules (the shared ``engine.runtime.outputs`` and ``engine.runtime.artifacts``), uploads
output artifacts to the artifact repository (``engine.runtime.s3``, configured through the env that
``executor_env`` writes) and prints them as one line, ``SLUICE-OUTPUTS {json}``, on its stdout::

    {"v": 1, "result": str | null, "parameters": [{"name", "value"}], "artifacts": [Argo artifact],
     "problems": [str], "exitCodes": {container: int | "skipped"}, "errors": {container: str}}

A problem is anything that should turn a succeeded step into an error (a missing output, a failed
upload, "step was stopped"); the operator decides the phase from the container statuses and these.
Nothing else is printed on stdout, so the last line starting with ``SLUICE-OUTPUTS `` is the document
even though the log API interleaves stderr (diagnostics) with it.

``http`` is the main container of an http step's pod (in place of a user's command, under
``sluice-run`` as usual): it performs the request by the embedded runtime's rules
(``engine.runtime.httpstep``) and prints the response body, which ``wait`` reports as the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TextIO

from engine.errors import ExecutorError, SluiceError, UnsupportedError
from engine.runtime.artifacts import load_input, pack_output
from engine.runtime.httpstep import HttpResult, perform
from engine.runtime.kubernetes.pods import HTTP_ENV, INPUTS_DIR, SCRIPT_PATH, STEP_ENV, VAR_DIR, WRAPPER
from engine.runtime.kubernetes.podstate import HTTP_EXIT_CODES
from engine.runtime.outputs import read_result, trim_one_newline
from engine.runtime.s3 import S3Repository, repository_from_env

JSONDict = dict[str, Any]

VAR_DIR_ENV = "SLUICE_VAR_DIR"
RUN_BINARY_ENV = "SLUICE_RUN_BINARY"
DEFAULT_RUN_BINARY = "/usr/local/bin/sluice-run"  # where the operator's image installs it
OUTPUTS_MARKER = "SLUICE-OUTPUTS "
STOPPED_PROBLEM = "step was stopped"
POLL_SECONDS = 0.05
STOP_WAIT_ENV = "SLUICE_STOP_WAIT_SECONDS"
DEFAULT_STOP_WAIT_SECONDS = 10.0
# Kubernetes shows this file's content as the terminated container's message.
TERMINATION_LOG = Path("/dev/termination-log")


def read_step(environ: Mapping[str, str]) -> JSONDict:
    """The step document from ``$SLUICE_STEP``; ExecutorError when it is missing or malformed."""
    raw = environ.get(STEP_ENV)
    if not raw:
        raise ExecutorError(f"${STEP_ENV} is not set")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExecutorError(f"${STEP_ENV} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ExecutorError(f"${STEP_ENV} is not a version 1 step document")
    return doc


def var_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(VAR_DIR_ENV) or VAR_DIR)


def _relative(absolute: str) -> Path:
    """A path of pods.py's layout (under VAR_DIR) as a path relative to the var dir."""
    return Path(PurePosixPath(absolute).relative_to(VAR_DIR))


def _file_name(kind: str, name: Any) -> str:
    """An artifact or parameter name used as one file name under the var dir."""
    text = str(name or "")
    if not text or text in (".", "..") or "/" in text or "\0" in text:
        raise ExecutorError(f"{kind} name {text!r} cannot be used as a file name")
    return text


# ================================================================================================ init


def init(environ: Mapping[str, str]) -> None:
    """Stage sluice-run, the script source and the input artifacts in the var dir."""
    doc = read_step(environ)
    var = var_dir(environ)

    source = Path(environ.get(RUN_BINARY_ENV) or DEFAULT_RUN_BINARY)
    target = var / _relative(WRAPPER)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
    except OSError as exc:
        raise ExecutorError(f"cannot copy sluice-run from {source}: {exc.strerror or exc}") from exc
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)

    script = doc.get("script")
    if script is not None:
        path = var / _relative(SCRIPT_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(script), encoding="utf-8")
        os.chmod(path, 0o644)

    repository = _LazyRepository(environ)
    for i, artifact in enumerate(doc.get("inputs") or ()):
        if not isinstance(artifact, Mapping) or not artifact.get("path"):
            continue  # pods.py mounts only artifacts with a path
        name = _file_name("input artifact", artifact.get("name"))
        load_input(
            artifact,
            var / INPUTS_DIR / name,
            staging=var / "staging" / f"in-{i}",
            repository_get=repository.get,
            secret=_no_secrets,
        )


def _no_secrets(name: str, key: str) -> str | None:
    # The executor containers run under the step's service account, which needs no permissions: they
    # cannot read Secrets, so an artifact that names one cannot be fetched here.
    raise UnsupportedError(
        f"secret {name}/{key}: artifact credentials from Secrets are not supported on Kubernetes yet"
    )


class _LazyRepository:
    """The artifact repository from the env, built on first use: a step without artifacts needs none."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._repo: S3Repository | None = None

    def repository(self) -> S3Repository:
        if self._repo is None:
            self._repo = repository_from_env(self._environ)
            if self._repo is None:
                raise ExecutorError("no artifact repository is configured")
        return self._repo

    def get(self, location: Mapping[str, Any], dest: Path) -> None:
        self.repository().get(location, dest)


def run_init(environ: Mapping[str, str], *, stderr: TextIO | None = None) -> int:
    """``sluice executor init``: 0 when staged; 1 and one line on stderr otherwise."""
    err = stderr or sys.stderr
    try:
        init(environ)
    except Exception as exc:
        message = _one_line(exc)
        print(f"sluice executor init: {message}", file=err, flush=True)
        if TERMINATION_LOG.exists():
            with contextlib.suppress(OSError):  # the message is in the log anyway
                TERMINATION_LOG.write_text(message, encoding="utf-8")
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, SluiceError | OSError) and text:
        return text.splitlines()[0]
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# ================================================================================================ http


def run_http(
    environ: Mapping[str, str],
    *,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
    termination_log: Path = TERMINATION_LOG,
) -> int:
    """``sluice executor http``: an http step's request, performed and judged as the embedded runtime does.

    The response body goes to stdout with a newline added, which the result's one-newline trim takes
    off again: the result is the body as received. The verdict leaves through Kubernetes' channel for
    a container's last word, where ``podstate`` reads it: the exit code names the phase
    (``podstate.HTTP_EXIT_CODES``) and the message is the termination message (``termination_log``,
    written only where the kubelet provides it); the message goes to stderr too, for the log."""
    out, err = stdout or sys.stdout.buffer, stderr or sys.stderr
    verdict = _http_verdict(environ)
    if verdict.result is not None:
        out.write(verdict.result.encode("utf-8") + b"\n")
        out.flush()
    if verdict.message:
        print(f"sluice executor http: {verdict.message}", file=err, flush=True)
        if termination_log.exists():
            with contextlib.suppress(OSError):  # the exit code alone then reads as no verdict
                termination_log.write_text(verdict.message, encoding="utf-8")
    return HTTP_EXIT_CODES[verdict.phase]


def _http_verdict(environ: Mapping[str, str]) -> HttpResult:
    """The request of ``$SLUICE_HTTP`` (see ``pods.HTTP_ENV``) performed; a Secret's value is read from
    the variable the kubelet filled for it, unset when the Secret or its key does not exist."""
    try:
        doc = json.loads(environ.get(HTTP_ENV) or "")
    except json.JSONDecodeError as exc:
        return HttpResult("Error", f"${HTTP_ENV} is not valid JSON: {exc}")
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("request"), dict):
        return HttpResult("Error", f"${HTTP_ENV} is not a version 1 http request document")
    variables = {
        (str(s.get("name")), str(s.get("key"))): str(s.get("env"))
        for s in doc.get("secrets") or ()
        if isinstance(s, Mapping)
    }

    def secret(name: str, key: str) -> str | None:
        variable = variables.get((name, key))
        return environ.get(variable) if variable else None

    try:
        return asyncio.run(perform(doc["request"], secret=secret))
    except SluiceError as exc:
        return HttpResult("Error", str(exc))
    except Exception as exc:  # as the embedded executor reports a step it could not run
        return HttpResult("Error", f"executor error: {exc}")


# ================================================================================================ wait


def wait_for_exits(var: Path, names: list[str], stop: threading.Event, *, after_stop: float = 0.0) -> bool:
    """Poll until every container in ``names`` has recorded its exit; False when they have not within
    ``after_stop`` seconds of ``stop`` being set."""
    pending = list(names)
    give_up: float | None = None
    while True:
        pending = [n for n in pending if not (var / "ctr" / n / "exitcode").exists()]
        if not pending:
            return True
        if not stop.is_set():
            stop.wait(POLL_SECONDS)
            continue
        now = time.monotonic()
        if give_up is None:
            give_up = now + after_stop
        if now >= give_up:
            return False
        time.sleep(POLL_SECONDS)


def collect(
    doc: Mapping[str, Any],
    var: Path,
    repository: Callable[[], S3Repository],
    *,
    stop: threading.Event,
    stderr: TextIO,
) -> JSONDict:
    """The outputs document from what the step's containers left in ``var`` (see the module docstring).

    ``repository`` is called only when an artifact is to be stored. When ``stop`` is set (SIGTERM)
    nothing more is uploaded and the problems say the step was stopped."""
    wrapped = [str(n) for n in doc.get("wrapped") or ()]
    stopped = stop.is_set()
    problems: list[str] = [STOPPED_PROBLEM] if stopped else []
    exit_codes: JSONDict = {}
    errors: dict[str, str] = {}
    for name in wrapped:
        code = _read_text(var / "ctr" / name / "exitcode")
        if code is None:
            continue
        code = code.strip()
        exit_codes[name] = int(code) if code.lstrip("-").isdigit() else code
        error = _read_text(var / "ctr" / name / "error")
        if error is not None:
            errors[name] = error.strip()

    result = read_result(var / "ctr" / "main" / "stdout") if doc.get("result") and "main" in wrapped else None

    parameters: list[JSONDict] = []
    for spec in doc.get("parameters") or ():
        name, path = str(spec.get("name")), str(spec.get("path"))
        try:
            with open(var / "outputs" / "parameters" / _file_name("output parameter", name), "rb") as f:
                value = f.read().decode("utf-8", errors="replace")
            parameters.append({"name": name, "value": trim_one_newline(value)})
        except ExecutorError as exc:
            problems.append(str(exc))
        except OSError as exc:
            if spec.get("default") is not None:
                parameters.append({"name": name, "value": str(spec["default"])})
            else:
                why = exc.strerror.lower() if exc.strerror else str(exc)
                problems.append(f"output parameter {name!r}: {path}: {why}")

    artifacts: list[JSONDict] = []
    work = var / "staging" / "out"
    try:
        for spec in doc.get("artifacts") or ():
            if stop.is_set():
                if STOPPED_PROBLEM not in problems:
                    problems.append(STOPPED_PROBLEM)
                break
            saved = _save_artifact(spec, var, work, repository, problems)
            if saved is not None:
                artifacts.append(saved)
        if doc.get("archiveLogs"):
            logs = _archive_logs(doc, var, repository, stderr)
            if logs is not None:
                artifacts.append(logs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    return {
        "v": 1,
        "result": result,
        "parameters": parameters,
        "artifacts": artifacts,
        "problems": problems,
        "exitCodes": exit_codes,
        "errors": errors,
    }


def _save_artifact(
    spec: Mapping[str, Any],
    var: Path,
    work: Path,
    repository: Callable[[], S3Repository],
    problems: list[str],
) -> JSONDict | None:
    name, path = str(spec.get("name")), str(spec.get("path"))
    try:
        source = var / "outputs" / "artifacts" / _file_name("output artifact", name)
    except ExecutorError as exc:
        problems.append(str(exc))
        return None
    if not os.path.lexists(source):
        if not spec.get("optional"):
            problems.append(f"output artifact {name!r}: {path}: no such file or directory")
        return None
    location = spec.get("location")
    if location:
        kind, loc = next(iter(location.items()))
        if not isinstance(loc, Mapping) or not loc.get("key"):
            problems.append(f"output artifact {name!r}: {kind} location without a key")
            return None
    archive = spec.get("archive")
    try:
        repo = repository()
        packed = pack_output(source, work, name, archive)
        stored = repo.put_at(location, packed) if location else repo.put(str(spec.get("key")), packed)
    except (OSError, SluiceError) as exc:
        problems.append(f"output artifact {name!r}: {exc}")
        return None
    art: JSONDict = {"name": name, "path": path, **stored}
    if archive is not None:
        art["archive"] = archive
    return art


def _archive_logs(
    doc: Mapping[str, Any], var: Path, repository: Callable[[], S3Repository], stderr: TextIO
) -> JSONDict | None:
    """Argo's ``archiveLogs``: the ``main-logs`` artifact, at the key the local runtime uses.

    Without API access (the step's service account needs none) this container cannot read the other
    containers' logs, so what is archived is main's stdout as sluice-run copied it (present when the
    template captures its result), without stderr. A failure here is reported on stderr and never
    changes the step's outcome."""
    stdout = var / "ctr" / "main" / "stdout"
    if not stdout.is_file():
        print(
            "sluice executor wait: archiveLogs: main's stdout was not captured; nothing archived", file=stderr
        )
        return None
    try:
        location = repository().put(f"{doc.get('workflow')}/{doc.get('pod')}/main.log", stdout)
    except (OSError, SluiceError) as exc:
        print(f"sluice executor wait: archiveLogs: {_one_line(exc)}", file=stderr)
        return None
    return {"name": "main-logs", **location}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None


def run_wait(
    environ: Mapping[str, str], *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """``sluice executor wait``: wait, collect, print the outputs line; 0 unless wait cannot work at all.

    SIGTERM (the pod is being deleted or has hit its deadline) reaches every container of the pod at
    once: main's ``sluice-run`` passes it on and records the exit, so wait gives main
    ``$SLUICE_STOP_WAIT_SECONDS`` (default 10, a third of Kubernetes' default grace period) to do that.
    The outputs printed then are what exists, without output artifacts, with the problem "step was
    stopped"."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        doc = read_step(environ)
    except ExecutorError as exc:
        print(f"sluice executor wait: {exc}", file=err, flush=True)
        return 2
    var = var_dir(environ)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
    try:
        wait_for_exits(var, [str(n) for n in doc.get("wrapped") or ()], stop, after_stop=_stop_wait(environ))
        lazy = _LazyRepository(environ)
        outputs = collect(doc, var, lazy.repository, stop=stop, stderr=err)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    err.flush()
    # One write of one line: the log API must not see it split by interleaved stderr.
    out.write(OUTPUTS_MARKER + json.dumps(outputs, separators=(",", ":")) + "\n")
    out.flush()
    return 0


def _stop_wait(environ: Mapping[str, str]) -> float:
    try:
        return max(0.0, float(environ.get(STOP_WAIT_ENV, "")))
    except ValueError:
        return DEFAULT_STOP_WAIT_SECONDS


def parse_outputs(log_text: str) -> JSONDict | None:
    """The outputs document in a ``wait`` container's log: its last ``SLUICE-OUTPUTS`` line, or None
    when there is none or it is not a version 1 document (the container died before printing it)."""
    for line in reversed(log_text.splitlines()):
        # The log interleaves stderr: a diagnostic without a final newline may precede the marker.
        at = line.rfind(OUTPUTS_MARKER)
        if at < 0:
            continue
        try:
            doc = json.loads(line[at + len(OUTPUTS_MARKER) :])
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) and doc.get("v") == 1 else None
    return None


__all__ = [
    "DEFAULT_RUN_BINARY",
    "OUTPUTS_MARKER",
    "STOPPED_PROBLEM",
    "collect",
    "init",
    "parse_outputs",
    "read_step",
    "run_http",
    "run_init",
    "run_wait",
    "wait_for_exits",
]
