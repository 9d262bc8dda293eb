"""The one exception tree of Sluicegate.

Every layer raises these and nothing else across its boundary; third-party errors are mapped at the
adapter edge with ``raise Ours(...) from exc``. The CLI turns any of them into one line and a non-zero
exit code.

    SluiceError
    ├── SpecError          a manifest is malformed: carries the file and every (path, message) problem
    ├── ExprError          a template tag or expression cannot be parsed or evaluated
    ├── ReferenceError_    a named object (template, WorkflowTemplate, ConfigMap...) does not exist
    ├── StateError         an operation does not fit the current state (resume a finished workflow...)
    ├── StoreError         the state store cannot read or write
    ├── ExecutorError      a step could not be started or its outputs not collected
    ├── UnsupportedError   a feature this runtime does not provide
    └── ProviderError      an external provider (S3, HTTP...) failed
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class SluiceError(Exception):
    """Base of every error Sluicegate raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a manifest, at a field path like ``spec.templates[2].dag.tasks[1].depends``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(SluiceError):
    """A manifest is malformed. Holds every problem found, each with its field path."""

    def __init__(self, problems: Iterable[Problem], *, file: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems) or (Problem("", "invalid manifest"),)
        self.file = file
        super().__init__(self.one_line())

    def with_file(self, file: str) -> SpecError:
        return SpecError(self.problems, file=file)

    def with_prefix(self, prefix: str) -> SpecError:
        """The same problems with their paths under ``prefix`` (a document index, a parent field)."""
        return SpecError(
            (Problem(f"{prefix}.{p.path}" if p.path else prefix, p.message) for p in self.problems),
            file=self.file,
        )

    def one_line(self) -> str:
        head = f"{self.file}: " if self.file else ""
        first = str(self.problems[0])
        more = len(self.problems) - 1
        return f"{head}{first}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")

    def lines(self) -> list[str]:
        head = f"{self.file}: " if self.file else ""
        return [f"{head}{p}" for p in self.problems]


class ExprError(SluiceError):
    """A template tag or an expression could not be parsed or evaluated."""

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        self.expression = expression
        super().__init__(message if expression is None else f"{message} in {expression!r}")


class ReferenceError_(SluiceError):
    """A named object the manifest refers to does not exist."""


class StateError(SluiceError):
    """The operation does not fit the object's current state."""


class StoreError(SluiceError):
    """The state store cannot read or write."""


class ExecutorError(SluiceError):
    """A step could not be started, or its outputs could not be collected."""


class UnsupportedError(SluiceError):
    """A feature the current runtime does not provide."""


class ProviderError(SluiceError):
    """An external provider (artifact store, HTTP endpoint, metrics backend) failed."""
