"""Loaders for the offline data of ``../shared/data`` and for datasets shipped in wheels.

A loader is a function ``loader(split, root, download, **loader_args) -> Pool``,
registered in ``LOADERS`` under the name a task's JSON file gives. It reads labels
only; a ``Pool`` decodes images on demand, so a subsample costs only its own
decoding. A loader whose data is absent raises ``TaskUnavailable``.
"""
from __future__ import annotations

import functools
import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from estimators.errors import InvalidInput
from estimators.registry import Registry

LOADERS = Registry("loader")


class TaskUnavailable(InvalidInput):
    """A task's data is absent here; the message says what was looked for and how to get it."""


@dataclass(frozen=True)
class Pool:
    """All items of one split: ``labels`` (dataset class indices) and a decoder for chosen positions."""

    labels: np.ndarray
    fetch: Callable[[np.ndarray], list[Image.Image]]
    source: str


def read_classes_tsv(path: Path) -> dict[str, int]:
    """``folder -> class index`` from a ``classes.tsv`` (header row, then one row per class)."""
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    return {row.split("\t")[0]: i for i, row in enumerate(rows) if row}


def _rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


@functools.lru_cache(maxsize=16)
def _tar_members(path: str, mtime_ns: int, size: int) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """``split -> (folders, data offsets, sizes)`` in archive order; cached per file version."""
    found: dict[str, tuple[list, list, list]] = {}
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isfile():
                continue
            split, folder, _ = member.name.split("/", 2)
            folders, offsets, sizes = found.setdefault(split, ([], [], []))
            folders.append(folder)
            offsets.append(member.offset_data)
            sizes.append(member.size)
    return {s: (f, np.asarray(o, np.int64), np.asarray(z, np.int64)) for s, (f, o, z) in found.items()}


def _read_members(path: Path, offsets: np.ndarray, sizes: np.ndarray) -> list[Image.Image]:
    images = []
    with open(path, "rb") as f:
        for offset, size in zip(offsets, sizes):
            f.seek(int(offset))
            images.append(_rgb(f.read(int(size))))
    return images


def _require(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise TaskUnavailable(f"looked for {path}: not found; {hint}")
    return path


def _offline_hint(folder: str) -> str:
    return (f"copy the offline '{folder}/' folder of shared/data there, or point TRANSFERBENCH_DATA "
            f"(or --data-root) at a folder that holds it")


@LOADERS.register("tar")
def tar_loader(split: str, root: Path, download: bool, *, folder: str, archive: str) -> Pool:
    """``<root>/<folder>/<archive>``: members ``<split>/<class folder>/<file>``, classes via ``classes.tsv``."""
    path = _require(root / folder / archive, _offline_hint(folder))
    index = read_classes_tsv(_require(root / folder / "classes.tsv", _offline_hint(folder)))
    stat = path.stat()
    members = _tar_members(str(path), stat.st_mtime_ns, stat.st_size)
    if split not in members:
        raise InvalidInput(f"{path} has no '{split}/' members (it has {', '.join(sorted(members))})")
    folders, offsets, sizes = members[split]
    labels = np.asarray([index[f] for f in folders], dtype=np.int64)
    return Pool(labels, lambda pos: _read_members(path, offsets[pos], sizes[pos]), str(path))


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic, big-endian dimension sizes, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _gray_images(pixels: np.ndarray) -> Callable[[np.ndarray], list[Image.Image]]:
    return lambda pos: [Image.fromarray(pixels[i]).convert("RGB") for i in pos]


@LOADERS.register("mnist_offline")
def mnist_loader(split: str, root: Path, download: bool, *, folder: str = "mnist") -> Pool:
    """Test: the IDX ``t10k`` files; train: ``mnist_5k.csv.gz`` (784 pixels, then the label)."""
    hint = _offline_hint(folder)
    if split == "test":
        images = _require(root / folder / "t10k-images-idx3-ubyte.gz", hint)
        labels = _read_idx(_require(root / folder / "t10k-labels-idx1-ubyte.gz", hint))
        pixels = _read_idx(images)
        source = str(images)
    elif split == "train":
        path = _require(root / folder / "mnist_5k.csv.gz", hint)
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
        source = str(path)
    else:
        raise InvalidInput(f"MNIST has splits train and test, not {split!r}")
    return Pool(labels.astype(np.int64), _gray_images(pixels), source)


@LOADERS.register("sklearn_digits")
def digits_loader(split: str, root: Path, download: bool, *, train_per_class: int, test_per_class: int) -> Pool:
    """sklearn ``load_digits`` (8x8, 0-16 scaled to 0-255): per class, in dataset order,
    the first ``train_per_class`` images are train and the next ``test_per_class`` test."""
    import sklearn
    from sklearn.datasets import load_digits

    digits = load_digits()
    rank = np.zeros(digits.target.size, dtype=np.int64)  # position of each image within its class
    for c in np.unique(digits.target):
        members = np.flatnonzero(digits.target == c)
        rank[members] = np.arange(members.size)
    bounds = {"train": (0, train_per_class), "test": (train_per_class, train_per_class + test_per_class)}
    if split not in bounds:
        raise InvalidInput(f"digits has splits train and test, not {split!r}")
    lo, hi = bounds[split]
    keep = np.flatnonzero((rank >= lo) & (rank < hi))
    pixels = np.rint(digits.images[keep] * (255.0 / 16.0)).astype(np.uint8)
    return Pool(digits.target[keep].astype(np.int64), _gray_images(pixels),
                f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})")
