"""Sluicegate: Argo-compatible workflows, events and rollouts in Python.

The public API, re-exported here and imported lazily (``import engine`` stays cheap for the CLI):

* manifests: :func:`load_file`, :func:`load_text`, :class:`Workflow`, :class:`WorkflowTemplate`,
  :class:`CronWorkflow`, :func:`validate_workflow`;
* the pure core: :class:`Reconciler`, :class:`Plan`, :class:`RunStep`, :class:`KillStep`,
  :class:`StepOutcome`, :class:`StepRun`, :class:`WorkflowStatus`, :func:`prepare_workflow`;
* the embedded runtime: :class:`LocalEngine`, :class:`EngineSettings`;
* errors: :class:`SluiceError`, :class:`SpecError`, :class:`ExprError`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_file": "engine.spec.loader",
    "load_text": "engine.spec.loader",
    "Workflow": "engine.spec.workflow",
    "WorkflowTemplate": "engine.spec.workflow",
    "CronWorkflow": "engine.spec.workflow",
    "validate_workflow": "engine.workflows.validate",
    "Reconciler": "engine.workflows.reconciler",
    "Plan": "engine.workflows.plan",
    "RunStep": "engine.workflows.plan",
    "KillStep": "engine.workflows.plan",
    "StepOutcome": "engine.workflows.plan",
    "StepRun": "engine.workflows.plan",
    "WorkflowStatus": "engine.workflows.status",
    "prepare_workflow": "engine.workflows.submit",
    "LocalEngine": "engine.runtime.local.engine",
    "EngineSettings": "engine.runtime.local.engine",
    "SluiceError": "engine.errors",
    "SpecError": "engine.errors",
    "ExprError": "engine.errors",
}

__all__ = [  # noqa: RUF022 - grouped as in the docstring
    "__version__",
    "load_file",
    "load_text",
    "Workflow",
    "WorkflowTemplate",
    "CronWorkflow",
    "validate_workflow",
    "Reconciler",
    "Plan",
    "RunStep",
    "KillStep",
    "StepOutcome",
    "StepRun",
    "WorkflowStatus",
    "prepare_workflow",
    "LocalEngine",
    "EngineSettings",
    "SluiceError",
    "SpecError",
    "ExprError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
