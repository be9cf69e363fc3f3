"""Read user-supplied embeddings (``.npz``) into an EmbeddingSet, with one-line errors.

Each array's header is read before its data: a shape the member cannot hold (a damaged
or hostile file claiming 10^12 elements) or more than the free memory is refused before
anything is allocated; so are complex values and too few class-prompt rows.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from estimators import EmbeddingSet, InvalidInput
from estimators.base import available_memory

REQUIRED = ("image_features", "labels")
OPTIONAL = ("text_features", "logit_scale", "logit_bias", "source_logits")


def _headers(path: Path, keys: list[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each ``key.npy`` member, read from its header; the data must fit the member."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    found = {}
    with zipfile.ZipFile(path) as archive:
        for key in keys:
            info = archive.getinfo(f"{key}.npy")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in readers:  # 3.0 (utf-8 field names) is never needed for features
                    raise InvalidInput(f"{path}: {key} is stored in .npy format {version[0]}.{version[1]}; "
                                       f"save it with numpy's default format (1.0 or 2.0)")
                shape, _, dtype = readers[version](f)
                payload = info.file_size - f.tell()
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > payload:
                raise InvalidInput(f"{path}: {key} claims shape {shape} ({nbytes:,} bytes) but holds only "
                                   f"{payload:,} bytes; the file is damaged")
            found[key] = shape, dtype
    return found


def _check_headers(path: Path, headers: dict) -> None:
    for key, (shape, dtype) in headers.items():
        if dtype.kind == "c":
            raise InvalidInput(f"{path}: {key} is complex-valued ({dtype}); features must be real numbers")
    need = sum(8 * math.prod(shape) for shape, _ in headers.values())   # as float64, as the estimators use them
    free = available_memory()
    if free is not None and need > free:
        raise InvalidInput(f"{path}: its arrays need about {need / 2**30:.1f} GiB in float64; "
                           f"{free / 2**30:.1f} GiB of memory is available")


def load_npz(path: str | Path) -> EmbeddingSet:
    """An npz with ``image_features`` (N, D), ``labels`` (N,), optionally ``text_features``
    (C, D), ``logit_scale``, ``logit_bias`` and ``source_logits`` (N, K: an image-only model's
    source classifier, e.g. its ImageNet head, for LEEP and NCE); rows are L2-normalised as in
    the pipeline."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; --embeddings takes .npz files (e.g. {path}/*.npz)")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"{path}: not an .npz file (expected a numpy archive from np.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED if k not in npz.files]
            if missing:
                raise InvalidInput(f"{path}: missing key(s) {', '.join(missing)}; "
                                   f"found {', '.join(npz.files) or 'none'}"
                                   f" (needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
            keys = [k for k in REQUIRED + OPTIONAL if k in npz.files]
            _check_headers(path, _headers(path, keys))
            arrays = {k: npz[k] for k in keys}
    except InvalidInput:
        raise
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"{path}: cannot read the archive ({exc})") from None
    scalars = {}
    for key in ("logit_scale", "logit_bias"):
        if key in arrays:
            if arrays[key].size != 1:
                raise InvalidInput(f"{path}: {key} must be a single number; got shape {arrays[key].shape}")
            try:
                scalars[key] = float(arrays[key].reshape(()))
            except (TypeError, ValueError):
                raise InvalidInput(f"{path}: {key} must be a number; got {arrays[key].reshape(())!r}") from None
    text, labels = arrays.get("text_features"), arrays["labels"]
    if text is not None and text.ndim == 2 and labels.size and labels.dtype.kind in "iu" \
            and labels.max() >= text.shape[0]:
        raise InvalidInput(f"{path}: labels go up to {labels.max()} but text_features has {text.shape[0]} rows, one "
                           f"per class, so labels must lie in 0..{text.shape[0] - 1}: a label is out of range "
                           f"or class-prompt rows are missing")
    try:
        return EmbeddingSet.create(arrays["image_features"], labels, text=text, meta={"source": str(path)},
                                   source_logits=arrays.get("source_logits"), **scalars)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None
