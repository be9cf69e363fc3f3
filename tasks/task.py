"""``Task`` (what one task file describes) and ``TaskSplit`` (images and labels of one split)."""
from __future__ import annotations

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
    ``data_digest``: for a user's image folder, the sha256 of its listing (file names and sizes),
    so that caches and result cells follow its content; empty for the registered tasks, whose
    ``version`` says when their data change.
    """

    id: str
    version: int
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    source: str
    loader: str
    loader_args: Mapping[str, Any] = field(hash=False)
    splits: Mapping[str, int] = field(hash=False)  # declared sizes of the full splits
    class_subset: tuple[int, ...] | None = None
    fallback: Mapping[str, Any] | None = field(default=None, hash=False)
    description: str = ""
    how_to_get: str = ""
    dataset: str = ""
    data_digest: str = ""

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


