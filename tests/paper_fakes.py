"""Tiny fake copies of the ten ``paper`` datasets, in the on-disk formats that torchvision
(or our own SUN397 / RESISC45 loaders) read: CIFAR pickles, MNIST idx, SVHN and Stanford
Cars ``.mat`` files, STL-10 binaries, image folders with their csv and list files.

As in torchvision's own dataset tests, the test writes the fakes: a few images per class,
but the real class lists (``data/paper_classes.json``) and the real file names and layout.
Every image has one flat colour that encodes the index of its class in the dataset's own
class list; its number within the class is encoded in its width (files) or its top-left
pixel (raw arrays of fixed size), so ``decode`` tells from the pixels alone which file a
loader returned. Each ``write_*`` returns ``split -> [(class index, number), ...]`` of what
it put in each of our splits (EuroSAT, which has no split of its own: ``"all"``).
"""
from __future__ import annotations

import json
import pickle
import random
import string
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

CLASSES = json.loads((Path(__file__).parent / "data" / "paper_classes.json").read_text(encoding="utf-8"))
SIDE = 8  # height of the fake image files; their width is SIDE + number within the class
RAW = {"cifar100": 32, "mnist_paper": 28, "stl10": 96, "svhn": 32}  # fixed image sides of array formats
EUROSAT_SIZES = [10, 11, 12, 13, 14, 15, 5, 7, 9, 30]  # images per class of the fake EuroSAT


def class_ids(task: str) -> list[str]:
    """The dataset's own class identifiers of ``task``, in its class order."""
    return CLASSES[task]["classes"]


def colour(c: int) -> tuple[int, int, int]:
    """The flat colour of class ``c`` (up to 512 classes, 32 levels apart per channel)."""
    return 32 * (c % 8) + 16, 32 * (c // 8 % 8) + 16, 32 * (c // 64) + 16


def decode(task: str, image: Image.Image) -> tuple[int, int]:
    """``(class index, number within the class)`` of a fake image as a loader returns it."""
    pixels = np.asarray(image.convert("RGB"))
    r, g, b = np.median(pixels.reshape(-1, 3), axis=0)
    if task == "mnist_paper":
        c = round((r - 12) / 24)
    else:
        c = round((r - 16) / 32) + 8 * round((g - 16) / 32) + 64 * round((b - 16) / 32)
    number = int(pixels[0, 0, 0]) if task in RAW else image.width - SIDE
    return c, number


def _image_file(path: Path, c: int, number: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIDE + number, SIDE), colour(c)).save(path, format=fmt, quality=95)


def _raw(c: int, number: int, side: int, gray: bool = False) -> np.ndarray:
    """An HxWx3 (HxW when ``gray``) uint8 array of class ``c``'s colour, ``number`` in the top-left pixel."""
    pixels = np.full((side, side), 24 * c + 12, np.uint8) if gray else np.tile(np.uint8(colour(c)), (side, side, 1))
    pixels[0, 0] = number
    return pixels


def _items(n_classes: int, per_class: int, seed: int, start: int = 0) -> list[tuple[int, int]]:
    """``(class, number)`` for ``per_class`` numbers from ``start`` in every class, shuffled."""
    items = [(c, start + k) for c in range(n_classes) for k in range(per_class)]
    random.Random(seed).shuffle(items)
    return items


def write_cars(root: Path) -> dict:
    """``stanford_cars/``: devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/,
    cars_test/, cars_test_annos_withlabels.mat (annotation ``class`` is 1-based)."""
    base, names = root / "stanford_cars", class_ids("cars")
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([names], dtype=object)})
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    written = {}
    for split, labels_file, per_class in (("train", base / "devkit" / "cars_train_annos.mat", 2),
                                          ("test", base / "cars_test_annos_withlabels.mat", 1)):
        items = _items(len(names), per_class, seed=1)
        table = np.zeros((1, len(items)), dtype=[(f, object) for f in fields])
        for i, (c, number) in enumerate(items):
            fname = f"{i + 1:05d}.jpg"
            _image_file(base / f"cars_{split}" / fname, c, number)
            table[0, i] = (np.uint16(1), np.uint16(1), np.uint16(SIDE), np.uint16(SIDE), np.uint8(c + 1), fname)
        savemat(labels_file, {"annotations": table})
        written[split] = items
    return written


def write_cifar100(root: Path) -> dict:
    """``cifar-100-python/``: pickles ``train`` and ``test`` (``data``: N x 3072 uint8, channel
    planes; ``fine_labels``) and ``meta`` (``fine_label_names``)."""
    base, names = root / "cifar-100-python", class_ids("cifar100")
    base.mkdir(parents=True)
    written = {}
    for split, per_class in (("train", 2), ("test", 1)):
        items = _items(len(names), per_class, seed=2)
        data = np.stack([_raw(c, k, 32).transpose(2, 0, 1).reshape(-1) for c, k in items])
        entry = {"filenames": [f"fake_{i}.png" for i in range(len(items))],
                 "fine_labels": [c for c, _ in items], "data": data}
        (base / split).write_bytes(pickle.dumps(entry, protocol=2))
        written[split] = items
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": names}, protocol=2))
    return written


def write_dtd(root: Path) -> dict:
    """``dtd/dtd/images/<class>/<class>_NNNN.jpg`` and ``dtd/dtd/labels/{train,val,test}1.txt``
    (lines ``<class>/<file>``). Our ``test`` is DTD's ``val``."""
    base, names = root / "dtd" / "dtd", class_ids("dtd")
    (base / "labels").mkdir(parents=True)
    written, start = {}, 0
    for split, per_class in (("train", 2), ("val", 1), ("test", 1)):
        items = _items(len(names), per_class, seed=3, start=start)
        start += per_class
        lines = []
        for c, number in items:
            name = f"{names[c]}/{names[c]}_{number + 1:04d}.jpg"
            _image_file(base / "images" / name, c, number)
            lines.append(name)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
        written[split] = items
    return {"train": written["train"], "test": written["val"]}


def write_eurosat(root: Path) -> dict:
    """``eurosat/2750/<Class>/<Class>_<n>.jpg``, n from 1, ``EUROSAT_SIZES`` images per class."""
    items = []
    for c, folder in enumerate(class_ids("eurosat")):
        for number in range(EUROSAT_SIZES[c]):
            _image_file(root / "eurosat" / "2750" / folder / f"{folder}_{number + 1}.jpg", c, number)
            items.append((c, number))
    return {"all": items}


def write_gtsrb(root: Path) -> dict:
    """``gtsrb/GTSRB/Training/<ClassId:05d>/<track>_<n>.ppm`` (+ a per-class GT csv), and
    ``gtsrb/GTSRB/Final_Test/Images/<n>.ppm`` labelled by ``gtsrb/GT-final_test.csv``."""
    base, n_classes = root / "gtsrb", len(class_ids("gtsrb_paper"))
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    train = _items(n_classes, 2, seed=4)
    for c in range(n_classes):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        rows = [header]
        for number in sorted(k for cc, k in train if cc == c):
            _image_file(folder / f"00000_{number:05d}.ppm", c, number, fmt="PPM")
            rows.append(f"00000_{number:05d}.ppm;{SIDE + number};{SIDE};0;0;{SIDE};{SIDE};{c}")
        (folder / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")
    test = _items(n_classes, 1, seed=5, start=2)
    rows = [header]
    for i, (c, number) in enumerate(test):
        _image_file(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", c, number, fmt="PPM")
        rows.append(f"{i:05d}.ppm;{SIDE + number};{SIDE};0;0;{SIDE};{SIDE};{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return {"train": train, "test": test}


def write_mnist(root: Path) -> dict:
    """``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed IDX)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    written = {}
    for split, prefix, per_class in (("train", "train", 3), ("test", "t10k", 2)):
        items = _items(10, per_class, seed=6)
        pixels = np.stack([_raw(c, k, 28, gray=True) for c, k in items])
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4I", 0x803, len(items), 28, 28)
                                                          + pixels.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2I", 0x801, len(items))
                                                          + bytes(c for c, _ in items))
        written[split] = items
    return written


def write_resisc45(root: Path) -> dict:
    """``resisc45/NWPU-RESISC45/<class>/<class>_NNN.jpg`` and ``resisc45/resisc45-{train,val,test}.txt``
    (one file name a line); also a hidden folder, as unpacking tools leave, which is no class."""
    base, names = root / "resisc45", class_ids("resisc45")
    (base / "NWPU-RESISC45" / ".ipynb_checkpoints").mkdir(parents=True)
    written, start = {}, 0
    for split, per_class in (("train", 3), ("val", 1), ("test", 2)):
        items = _items(len(names), per_class, seed=7, start=start)
        start += per_class
        lines = []
        for c, number in items:
            fname = f"{names[c]}_{number + 1:03d}.jpg"
            _image_file(base / "NWPU-RESISC45" / names[c] / fname, c, number)
            lines.append(fname)
        (base / f"resisc45-{split}.txt").write_text("\n".join(lines) + "\n")
        written[split] = items
    return {"train": written["train"], "test": written["test"]}


def _stl10_images(items: list[tuple[int, int]]) -> bytes:
    """STL-10 ``*_X.bin``: N x 3 x 96 x 96 uint8, each channel stored column-major."""
    return np.stack([_raw(c, k, 96).transpose(2, 1, 0) for c, k in items]).tobytes()


def write_stl10(root: Path) -> dict:
    """``stl10_binary/``: {train,test}_{X,y}.bin (labels 1-10), unlabeled_X.bin, class_names.txt."""
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    written = {}
    for split, per_class in (("train", 2), ("test", 1)):
        items = _items(10, per_class, seed=8)
        (base / f"{split}_X.bin").write_bytes(_stl10_images(items))
        (base / f"{split}_y.bin").write_bytes(bytes(c + 1 for c, _ in items))
        written[split] = items
    (base / "unlabeled_X.bin").write_bytes(_stl10_images([(0, 0)]))
    (base / "class_names.txt").write_text("\n".join(class_ids("stl10")) + "\n")
    return written


def write_sun397(root: Path) -> dict:
    """``SUN397/ClassName.txt`` and ``SUN397/<letter>/<class path>/sun_<16 letters>.jpg``; the
    partition files ``Training_0N.txt`` / ``Testing_0N.txt`` in the data root (as the IIMM code):
    partition 1 has numbers 0-1 (train) and 2 (test) of each class, partition 2 other ones."""
    base, ids = root / "SUN397", class_ids("sun397")
    base.mkdir(parents=True)
    (base / "ClassName.txt").write_text("\n".join(ids) + "\n")
    rng = random.Random(9)
    paths = {}
    for c, class_id in enumerate(ids):
        for number in range(4):
            path = f"{class_id}/sun_{''.join(rng.choices(string.ascii_lowercase, k=16))}.jpg"
            _image_file(base / path.lstrip("/"), c, number)
            paths[c, number] = path
    partitions = {"Training_01": (0, 1), "Testing_01": (2,), "Training_02": (1, 3), "Testing_02": (0,)}
    written = {}
    for name, numbers in partitions.items():
        items = [(c, k) for c in range(len(ids)) for k in numbers]
        random.Random(name).shuffle(items)
        (root / f"{name}.txt").write_text("\n".join(paths[i] for i in items) + "\n")
        written[name] = items
    return {"train": written["Training_01"], "test": written["Testing_01"]}


def write_svhn(root: Path) -> dict:
    """``svhn/{train,test}_32x32.mat``: ``X`` 32 x 32 x 3 x N uint8, ``y`` N x 1 with digit 0 as 10."""
    base = root / "svhn"
    base.mkdir(parents=True)
    written = {}
    for split, per_class in (("train", 3), ("test", 2)):
        items = _items(10, per_class, seed=10)
        pixels = np.stack([_raw(c, k, 32) for c, k in items], axis=-1)
        labels = np.array([[c or 10] for c, _ in items], dtype=np.uint8)
        savemat(base / f"{split}_32x32.mat", {"X": pixels, "y": labels})
        written[split] = items
    return written


WRITERS = {"cars": write_cars, "cifar100": write_cifar100, "dtd": write_dtd, "eurosat": write_eurosat,
           "gtsrb_paper": write_gtsrb, "mnist_paper": write_mnist, "resisc45": write_resisc45,
           "stl10": write_stl10, "sun397": write_sun397, "svhn": write_svhn}


def write_all(root: Path) -> dict[str, dict]:
    """Every fake under the data root ``root``: ``task -> split -> [(class, number), ...]``."""
    return {task: write(root) for task, write in WRITERS.items()}


def accept_fake_md5(patch) -> None:
    """torchvision checks the CIFAR-100, STL-10 and SVHN files against the md5 of the real data;
    with ``patch`` (a ``pytest.MonkeyPatch``) that check runs without the md5 (the file must still
    be there), as in torchvision's own dataset tests."""
    from tasks.torchvision_compat import import_torchvision

    datasets = import_torchvision().datasets
    for module in (datasets.cifar, datasets.stl10, datasets.svhn):
        patch.setattr(module, "check_integrity", lambda fpath, md5=None: datasets.utils.check_integrity(fpath))
