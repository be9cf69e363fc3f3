"""Loaders for the ``paper`` suite: torchvision datasets and the IIMM paper's own splits.

Everything is read under the data root in torchvision's layout (as the IIMM
reference code's ``./data``). ``download`` is passed through to torchvision and
is False unless the user allows downloads. torchvision is imported lazily, and
only through ``tasks.torchvision_compat.import_torchvision``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from estimators.errors import InvalidInput

from .loaders import LOADERS, Pool, TaskUnavailable


def open_dataset(name: str, location: Path, download: bool, downloadable: bool = True, **kwargs):
    """``torchvision.datasets.<name>(root=location, download=download, **kwargs)``, or TaskUnavailable."""
    from .torchvision_compat import import_torchvision

    datasets = import_torchvision().datasets
    download = download and downloadable
    try:
        return getattr(datasets, name)(root=str(location), download=download, **kwargs)
    except (RuntimeError, OSError, ValueError) as exc:  # not found, no network, dead URL
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if download:
            raise TaskUnavailable(f"torchvision {name} could not be fetched into {location} ({reason})") from None
        offer = "; allow downloads (download=True) to fetch it" if downloadable else ""
        raise TaskUnavailable(f"torchvision {name} not found under {location} ({reason}){offer}") from None


def dataset_labels(dataset) -> np.ndarray:
    """Class indices of a torchvision dataset without decoding any image."""
    for attr in ("targets", "labels", "_labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr), dtype=np.int64)
    return np.asarray([label for _, label in dataset._samples], dtype=np.int64)


def _fetcher(dataset, positions: np.ndarray | None = None):
    def fetch(pos):
        items = pos if positions is None else positions[pos]
        return [dataset[int(i)][0].convert("RGB") for i in items]

    return fetch


def _split_arg(split: str, split_kwargs: dict) -> dict:
    if split not in split_kwargs:
        raise InvalidInput(f"no split {split!r} here (splits: {', '.join(split_kwargs)})")
    return split_kwargs[split]


def _split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise InvalidInput(f"no split {split!r} here (splits: train, test)")
    return split


@LOADERS.register("torchvision")
def torchvision_loader(split: str, root: Path, download: bool, *, dataset: str, split_kwargs: dict,
                       subdir: str | None = None, downloadable: bool = True) -> Pool:
    """A torchvision dataset class; ``split_kwargs`` maps our split to its constructor arguments.
    ``downloadable`` is False where torchvision can no longer download the dataset."""
    location = root / subdir if subdir else root
    ds = open_dataset(dataset, location, download, downloadable, **_split_arg(split, split_kwargs))
    return Pool(dataset_labels(ds), _fetcher(ds), f"torchvision {dataset} ({location})")


@LOADERS.register("eurosat")
def eurosat_loader(split: str, root: Path, download: bool, *, train_fraction: float, random_state: int) -> Pool:
    """torchvision EuroSAT (no split of its own) split as in the IIMM code: per class a pandas
    ``groupby(label).sample(frac=train_fraction, random_state=random_state)`` is train, the rest test."""
    import pandas as pd

    ds = open_dataset("EuroSAT", root, download)
    labels = dataset_labels(ds)
    in_train = np.zeros(labels.size, dtype=bool)
    in_train[pd.DataFrame({"label": labels}).groupby("label").sample(
        frac=train_fraction, random_state=random_state).index] = True
    keep = np.flatnonzero({"train": in_train, "test": ~in_train}[_split_name(split)])
    return Pool(labels[keep], _fetcher(ds, keep), f"torchvision EuroSAT ({root}), IIMM split")


def _first_lines(candidates: list[Path], hint: str) -> list[str]:
    """Non-empty stripped lines of the first existing file among ``candidates``."""
    for path in candidates:
        if path.is_file():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    raise TaskUnavailable(f"looked for {' or '.join(map(str, candidates))}: not found; {hint}")


def _class_labels(classes: list[str], index: dict[str, int], listing: str) -> np.ndarray:
    """Class index of each entry of a list file; a class the dataset lacks is one clear line."""
    unknown = sorted(set(classes) - index.keys())
    if unknown:
        raise InvalidInput(f"{listing} names {len(unknown)} class(es) the dataset does not have, e.g. {unknown[0]!r}")
    return np.asarray([index[c] for c in classes], dtype=np.int64)


def _image_files(paths: list[Path]):
    def fetch(pos):
        images = []
        for i in pos:
            with Image.open(paths[int(i)]) as image:
                images.append(image.convert("RGB"))
        return images

    return fetch


@LOADERS.register("sun397")
def sun397_loader(split: str, root: Path, download: bool, *, partition: int) -> Pool:
    """SUN397 with the official partition files ``Training_NN.txt`` / ``Testing_NN.txt`` (as IIMM).

    Images and ``ClassName.txt`` in ``<root>/SUN397`` (torchvision's layout, which its
    download fills); the partition files in ``<root>/SUN397`` or ``<root>``.
    """
    base = root / "SUN397"
    if download and not (base / "ClassName.txt").is_file():
        open_dataset("SUN397", root, download)
    hint = ("get the images with torchvision SUN397 (download=True) and unzip "
            "https://3dvision.princeton.edu/projects/2010/SUN/download/Partitions.zip into " + str(base))
    names = _first_lines([base / "ClassName.txt"], hint)
    index = {name[3:]: i for i, name in enumerate(names)}  # "/a/abbey" -> "abbey"
    list_name = f"{'Training' if _split_name(split) == 'train' else 'Testing'}_{partition:02d}.txt"
    files = _first_lines([base / list_name, root / list_name], hint)
    labels = _class_labels(["/".join(f.split("/")[2:-1]) for f in files], index, f"SUN397 {list_name}")
    return Pool(labels, _image_files([base / f.lstrip("/") for f in files]), f"SUN397 ({base}, {list_name})")


@LOADERS.register("resisc45")
def resisc45_loader(split: str, root: Path, download: bool) -> Pool:
    """NWPU-RESISC45 (not in torchvision) with the split files of Neumann et al. 2019 (as IIMM/torchgeo):
    ``<root>/resisc45/NWPU-RESISC45/<class>/<class>_NNN.jpg`` and ``<root>/resisc45/resisc45-<split>.txt``."""
    base = root / "resisc45"
    hint = ("RESISC45 is not in torchvision and needs a manual download: unpack NWPU-RESISC45 "
            f"(the authors' release, or torchgeo's RESISC45 download) into {base}/NWPU-RESISC45 "
            "and put resisc45-train.txt / resisc45-test.txt from "
            f"https://storage.googleapis.com/remote_sensing_representations/ into {base}")
    files = _first_lines([base / f"resisc45-{_split_name(split)}.txt"], hint)
    images = base / "NWPU-RESISC45"
    if not images.is_dir():
        raise TaskUnavailable(f"looked for {images}: not found; {hint}")
    # class i = the i-th class folder in sorted order (as ImageFolder), hidden folders aside
    classes = sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    index = {folder: i for i, folder in enumerate(classes)}
    folders = [f.rsplit("_", 1)[0] for f in files]  # "baseball_diamond_001.jpg" -> "baseball_diamond"
    labels = _class_labels(folders, index, f"RESISC45 resisc45-{split}.txt")
    paths = [images / folder / f for folder, f in zip(folders, files)]
    return Pool(labels, _image_files(paths), f"RESISC45 ({images}, resisc45-{split}.txt)")
