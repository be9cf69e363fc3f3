"""The task registry: class names, prompt templates and loaders, one JSON file per task.

Each file of ``definitions/`` is registered in ``TASKS`` at import (CLIP_benchmark
style: tasks are data, not code); a user's task file, anywhere, is read and registered
with ``load_task_file``. ``get_task(name).load(split, n=..., seed=...)`` gives a
``TaskSplit``; data are found under ``data_root()``.
"""
import os
from pathlib import Path

from estimators.errors import InvalidInput
from estimators.registry import Registry

from . import imagefolder, torchvision_loaders  # noqa: F401  (register their loaders)
from .loaders import LOADERS, TaskUnavailable
from .sampling import balanced_indices
from .task import Task, TaskSplit, data_root
from .task_file import read_definitions, read_image_folder, read_task_file

DEFINITIONS = Path(__file__).parent / "definitions"
TASKS = Registry("task")
for _task in read_definitions(DEFINITIONS):
    TASKS.register(_task.id)(_task)
BUILT_IN = frozenset(TASKS.names())


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching fnmatch ``pattern`` (comma-separated allowed)."""
    return TASKS.names(pattern)


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name raises ``UnknownName`` with close matches."""
    return TASKS.get(name)


def register_task(task: Task) -> None:
    """Register ``task`` (a user's, from ``read_task_file``) under its id, in place of an earlier user's
    task of that id (a task file read again); a registered task's id is not available."""
    if task.id in BUILT_IN and TASKS.get(task.id) != task:
        raise InvalidInput(f"task id {task.id!r} is taken by a registered task; give yours another \"id\"")
    TASKS.register(task.id, replace=True)(task)


def load_task_file(path) -> str:
    """Read and register a user's task file, or an image folder given without one
    (``tasks.task_file.read_image_folder``); its task id."""
    task = read_image_folder(path) if os.path.isdir(path) else read_task_file(path)
    try:
        register_task(task)
    except InvalidInput as exc:
        raise InvalidInput(f"task file {path}: key 'id': {exc}") from None
    return task.id


def dataset_of(task_id: str) -> str:
    """The dataset a task's images come from (``Task.dataset``); an unregistered id is its own."""
    return TASKS.get(task_id).dataset if task_id in TASKS else task_id


def data_key(task: Task) -> dict:
    """The part of a cache or result spec that follows a user's data (``Task.data_digest``):
    empty for the registered tasks, so their keys stay as they are."""
    return {"task_data": task.data_digest} if task.data_digest else {}


__all__ = ["DEFINITIONS", "LOADERS", "TASKS", "Task", "TaskSplit", "TaskUnavailable", "balanced_indices",
           "data_key", "data_root", "dataset_of", "get_task", "list_tasks", "load_task_file", "read_task_file",
           "register_task"]
