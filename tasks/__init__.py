"""The task registry: class names, prompt templates and loaders, one JSON file per task.

Each file of ``definitions/`` is registered in ``TASKS`` at import (CLIP_benchmark
style: tasks are data, not code). ``get_task(name).load(split, n=..., seed=...)``
gives a ``TaskSplit``; data are found under ``data_root()``.
"""
from pathlib import Path

from estimators.registry import Registry

from . import torchvision_loaders  # noqa: F401  (registers the paper-suite loaders)
from .loaders import LOADERS, TaskUnavailable
from .sampling import balanced_indices
from .task import Task, TaskSplit, data_root, read_definitions

TASKS = Registry("task")
for _task in read_definitions(Path(__file__).parent / "definitions"):
    TASKS.register(_task.id)(_task)


def list_tasks(pattern: str = "*", suite: str | None = None) -> list[str]:
    """Task names matching fnmatch ``pattern`` (comma-separated allowed), optionally only one suite's."""
    return [name for name in TASKS.names(pattern) if suite is None or suite in TASKS.get(name).suites]


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name raises ``UnknownName`` with close matches."""
    return TASKS.get(name)


__all__ = ["LOADERS", "TASKS", "Task", "TaskSplit", "TaskUnavailable", "balanced_indices", "data_root",
           "get_task", "list_tasks"]
