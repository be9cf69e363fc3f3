"""Read user-supplied embeddings (``.npz``) into an EmbeddingSet, with one-line errors."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from estimators import EmbeddingSet, InvalidInput

REQUIRED = ("image_features", "labels")
OPTIONAL = ("text_features", "logit_scale", "logit_bias")


def load_npz(path: str | Path) -> EmbeddingSet:
    """An npz with ``image_features`` (N, D), ``labels`` (N,), optionally ``text_features``
    (C, D), ``logit_scale`` and ``logit_bias``; rows are L2-normalised as in the pipeline."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"{path}: not an .npz file (expected a numpy archive from np.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED if k not in npz.files]
            if missing:
                raise InvalidInput(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(npz.files) or 'none'}"
                                   f" (needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
            arrays = {k: npz[k] for k in REQUIRED + OPTIONAL if k in npz.files}
    except InvalidInput:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"{path}: cannot read the archive ({exc})") from None
    scalars = {}
    for key in ("logit_scale", "logit_bias"):
        if key in arrays:
            if arrays[key].size != 1:
                raise InvalidInput(f"{path}: {key} must be a single number; got shape {arrays[key].shape}")
            scalars[key] = float(arrays[key].reshape(()))
    try:
        return EmbeddingSet.create(arrays["image_features"], arrays["labels"], text=arrays.get("text_features"),
                                   meta={"source": str(path)}, **scalars)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None
