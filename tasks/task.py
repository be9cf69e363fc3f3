"""``Task`` (one JSON file of ``definitions/``) and ``TaskSplit`` (images and labels of one split)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from estimators.errors import InvalidInput

from .loaders import LOADERS, Pool, TaskUnavailable
from .sampling import balanced_indices


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit`` (``--data-root``), else ``$TRANSFERBENCH_DATA``, else ``~/.cache/transferbench/data``."""
    chosen = explicit or os.environ.get("TRANSFERBENCH_DATA")
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "transferbench" / "data"


@dataclass(frozen=True)
class TaskSplit:
    """A (sub)sample of one split: RGB PIL ``images``, int64 ``labels`` in 0..C-1, and
    ``indices``: the positions of those items in the dataset's full split, in the loader's
    order (for a class-subset task: positions in the parent dataset's split)."""

    task_id: str
    split: str
    images: list
    labels: np.ndarray
    indices: np.ndarray
    source: str
    seed: int

    @property
    def n(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return self.n


@dataclass(frozen=True)
class Task:
    """An image-classification task described by data: class names, prompt templates, loader.

    ``templates[0]`` is the canonical template (the IIMM paper's for the ``paper`` suite); the
    rest form a prompt ensemble. ``class_subset`` lists the dataset class indices a class-subset
    variant keeps, in the order of ``classnames``; labels are re-indexed to 0..K-1.
    ``dataset`` names the dataset the images come from: the task's own id, or for a
    class-subset variant its parent's (tasks sharing it are not out-of-domain for each other).
    """

    id: str
    version: int
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    suites: tuple[str, ...]
    source: str
    loader: str
    loader_args: Mapping[str, Any] = field(hash=False)
    splits: Mapping[str, int] = field(hash=False)  # declared sizes of the full splits
    class_subset: tuple[int, ...] | None = None
    fallback: Mapping[str, Any] | None = field(default=None, hash=False)
    description: str = ""
    how_to_get: str = ""
    dataset: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    @property
    def template(self) -> str:
        return self.templates[0]

    def prompts(self, template_index: int = 0) -> list[str]:
        """One prompt per class from ``templates[template_index]``."""
        template = self.templates[template_index]
        return [template.replace("{c}", name) for name in self.classnames]

    def labels(self, split: str, data_root: str | os.PathLike | None = None, download: bool = False) -> np.ndarray:
        """Labels (0..C-1) of the whole split, without decoding images."""
        _, _, labels = self._items(split, data_root, download)
        return labels

    def load(self, split: str, data_root: str | os.PathLike | None = None, n: int | None = None,
             seed: int = 0, download: bool = False, subset=None) -> TaskSplit:
        """A class-balanced sample of ``n`` items of ``split`` (all when None; a split smaller
        than ``n`` is given whole). The same ``(n, seed)`` always gives the same items.
        ``subset``: positions within that sample to return (only their images are decoded).
        ``download`` allows torchvision to fetch data that is not under the data root."""
        pool, keep, labels = self._items(split, data_root, download)
        chosen = balanced_indices(labels, n, seed)
        if subset is not None:
            chosen = chosen[np.asarray(subset, dtype=np.int64)]
        return TaskSplit(self.id, split, pool.fetch(keep[chosen]), labels[chosen], keep[chosen], pool.source, seed)

    def _items(self, split: str, root, download: bool) -> tuple[Pool, np.ndarray, np.ndarray]:
        if split not in self.splits:
            raise InvalidInput(f"task {self.id!r} has no split {split!r} (splits: {', '.join(self.splits)})")
        pool = self._pool(split, data_root(root), download)
        if self.class_subset is None:
            keep, labels = np.arange(pool.labels.size, dtype=np.int64), pool.labels
        else:
            lookup = np.full(max(*self.class_subset, int(pool.labels.max(initial=0))) + 1, -1, np.int64)
            lookup[list(self.class_subset)] = np.arange(len(self.class_subset))
            keep = np.flatnonzero(lookup[pool.labels] >= 0)
            labels = lookup[pool.labels[keep]]
        if labels.size and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise InvalidInput(f"task {self.id!r}: {pool.source} has labels outside 0..{self.n_classes - 1}")
        return pool, keep, labels

    def _pool(self, split: str, root: Path, download: bool) -> Pool:
        try:
            return LOADERS.get(self.loader)(split, root, download, **self.loader_args)
        except TaskUnavailable as exc:
            problem = str(exc)
        if self.fallback is not None:
            try:
                return LOADERS.get(self.fallback["loader"])(split, root, download, **self.fallback["args"])
            except TaskUnavailable as exc:
                problem += f"; fallback: {exc}"
        hint = f"; {self.how_to_get}" if self.how_to_get else ""
        raise TaskUnavailable(f"task {self.id!r} is unavailable: {problem}{hint}")


_FIELDS = {"id", "version", "classnames", "templates", "suites", "source", "loader", "loader_args", "splits",
           "class_subset", "fallback", "description", "how_to_get", "parent"}


def read_definitions(folder: Path) -> list[Task]:
    """Every ``*.json`` task file of ``folder``; a file with ``"parent"`` inherits the parent's
    fields and names a ``class_subset`` among the parent's class names."""
    specs = {}
    for path in sorted(folder.glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        unknown = set(spec) - _FIELDS
        if unknown or spec.get("id") != path.stem:
            raise ValueError(f"{path}: id must equal the file name; unknown fields: {sorted(unknown)}")
        specs[path.stem] = spec
    return [_task(_resolve(spec, specs)) for spec in specs.values()]


def _resolve(spec: dict, specs: dict) -> dict:
    if "parent" not in spec:
        return spec
    parent = _resolve(specs[spec["parent"]], specs)
    indices = [parent["classnames"].index(name) for name in spec["class_subset"]]
    base = {k: v for k, v in parent.items() if k != "description"}
    return {**base, **{k: v for k, v in spec.items() if k != "parent"},
            "class_subset": indices, "classnames": spec["class_subset"], "dataset": parent.get("dataset", parent["id"])}


def _task(spec: dict) -> Task:
    bad = [t for t in spec["templates"] if "{c}" not in t]
    if bad or not spec["classnames"]:
        raise ValueError(f"task {spec['id']!r}: needs class names and '{{c}}' in every template (bad: {bad})")
    subset = spec.get("class_subset")
    return Task(
        id=spec["id"], version=int(spec["version"]), classnames=tuple(spec["classnames"]),
        templates=tuple(spec["templates"]), suites=tuple(spec["suites"]), source=spec["source"],
        loader=spec["loader"], loader_args=dict(spec.get("loader_args", {})),
        splits=dict(spec["splits"]), class_subset=tuple(subset) if subset else None,
        fallback=spec.get("fallback"),
        description=spec.get("description", ""), how_to_get=spec.get("how_to_get", ""),
        dataset=spec.get("dataset", spec["id"]))
