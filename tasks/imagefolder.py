"""``imagefolder``: a user's folder of images, one subfolder per class and split.

Layout (torchvision ``ImageFolder`` per split)::

    DIR/train/<class>/*.jpg    DIR/test/<class>/*.jpg

Class ``i`` is the ``i``-th class folder in sorted order; a task file's ``classnames`` name
them in that order (else the folder names are the class names). Files with an image
extension (``EXTENSIONS``) count, hidden files and anything else are ignored. A missing
folder, a class folder missing from one split and a class without images are errors;
an image that cannot be decoded is one when it is first read.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from estimators.errors import InvalidInput

from .loaders import LOADERS, Pool

SPLITS = ("train", "test")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


def scan(path: str | Path) -> dict[str, dict[str, list[Path]]]:
    """``split -> class folder -> image files`` (sorted), checked as the module docstring says."""
    root = Path(path)
    found = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise InvalidInput(f"image folder {root}: no {split}/ folder (expected {root}/{split}/<class>/<image>)")
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise InvalidInput(f"image folder {root}: {split}/ has no class folders")
        found[split] = {c.name: sorted(f for f in c.iterdir() if _is_image(f)) for c in classes}
    train, test = (set(found[s]) for s in SPLITS)
    for split, lacking in (("test", train - test), ("train", test - train)):
        if lacking:
            raise InvalidInput(f"image folder {root}: class folder {sorted(lacking)[0]!r} is missing from {split}/ "
                               f"({len(lacking)} class(es) are in one split only)")
    for split, classes in found.items():
        empty = [name for name, files in classes.items() if not files]
        if empty:
            raise InvalidInput(f"image folder {root}: class {empty[0]!r} has no images in {split}/ "
                               f"(image files end in {', '.join(EXTENSIONS)})")
    return found


def describe(path: str | Path) -> dict:
    """What a task file may leave out: ``classnames`` (the class folders), ``splits`` (images per
    split) and ``data_digest`` (sha256 of every image's split, class, name and size)."""
    found = scan(path)
    digest = hashlib.sha256()
    for split, classes in found.items():
        for name, files in classes.items():
            for f in files:
                digest.update(f"{split}/{name}/{f.name}\t{f.stat().st_size}\n".encode())
    return {"classnames": list(found["train"]), "splits": {s: sum(map(len, c.values())) for s, c in found.items()},
            "data_digest": digest.hexdigest()}


@LOADERS.register("imagefolder")
def imagefolder_loader(split: str, root: Path, download: bool, *, path: str) -> Pool:
    """The images of ``path/<split>/<class>/`` with labels by sorted class folder (``root`` is unused:
    ``path`` is the task file's own, made absolute when the file is read)."""
    if split not in SPLITS:
        raise InvalidInput(f"image folder {path} has splits train and test, not {split!r}")
    classes = scan(path)[split]
    files = [f for fs in classes.values() for f in fs]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(fs) for fs in classes.values()])
    return Pool(labels, lambda pos: [_decode(files[int(i)], path) for i in pos], str(Path(path) / split))


imagefolder_loader.describe = describe


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in EXTENSIONS


def _decode(file: Path, root) -> Image.Image:
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"image folder {root}: cannot decode {file.relative_to(root)} "
                           f"({type(exc).__name__}: {exc})") from None
