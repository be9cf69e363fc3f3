"""EmbeddingSet: the one data contract between encoders and estimators (numpy only).

One EmbeddingSet holds what an encoder produced for one task split:

* ``image``  (N, D) float32, rows L2-normalised
* ``labels`` (N,)   int64 in 0..C-1
* ``text``   (C, D) float32, one L2-normalised class-prompt embedding per class, or None
  (an image-only encoder, e.g. a timm ImageNet classifier, has no text tower)
* ``source_logits`` (N, K) float32 or None: the encoder's own source classifier over its K
  source classes (an image-only model's ImageNet head), not normalised; LEEP and NCE use it
  as their source model when present (``source_probs``)
* ``logit_scale`` / ``logit_bias``: the encoder's zero-shot temperature as a plain
  multiplier (CLIP: 100, i.e. ``exp`` of open_clip's stored log scale) and SigLIP's bias
* ``meta``: provenance (encoder id, task id, split, template, n, versions)

Arrays are read-only: several reference estimator implementations mutate their
inputs in place, which would silently corrupt a shared cache entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInput


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (float32). Zero rows are an error."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)):
        raise InvalidInput(f"{int(np.sum(~np.isfinite(norms)))} feature row(s) are too large to normalise "
                           f"(norm overflows float64, largest |value| {np.max(np.abs(x)):.3g}): rescale the features")
    if np.any(norms == 0):
        raise InvalidInput(f"{int(np.sum(norms == 0))} feature row(s) are all zero and cannot be L2-normalised")
    return (x / norms).astype(np.float32)


@dataclass(frozen=True)
class EmbeddingSet:
    image: np.ndarray
    labels: np.ndarray
    text: np.ndarray | None = None
    logit_scale: float | None = None
    logit_bias: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    n_classes: int = 0
    source_logits: np.ndarray | None = None

    @classmethod
    def create(cls, image, labels, text=None, logit_scale=None, logit_bias=None,
               meta=None, n_classes=None, normalise=True, source_logits=None) -> "EmbeddingSet":
        """Validate and build an EmbeddingSet; raises InvalidInput naming the problem.

        ``normalise=True`` L2-normalises image and text rows (the pipeline's convention).
        ``n_classes`` defaults to the number of text rows, else ``max(label) + 1``.
        ``source_logits`` (N, K), K >= 2: the source classifier's logits, kept as float32 as given.
        """
        image = np.asarray(image)
        if image.ndim != 2 or image.shape[0] == 0 or image.shape[1] == 0:
            raise InvalidInput(f"image features must be a non-empty 2-D array (N, D); got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.number):
            raise InvalidInput(f"image features must be numeric; got dtype {image.dtype}")
        if not np.all(np.isfinite(image)):
            raise InvalidInput(f"image features contain {int(np.sum(~np.isfinite(image)))} NaN or inf value(s)")
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise InvalidInput(f"labels must be a 1-D array; got shape {labels.shape}")
        if labels.shape[0] != image.shape[0]:
            raise InvalidInput(f"labels has {labels.shape[0]} entries but image features have {image.shape[0]} rows")
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise InvalidInput("labels must be integers (found non-integer values)")
        elif labels.dtype.kind not in "iub":
            raise InvalidInput(f"labels must be integers; got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        if text is not None:
            text = np.asarray(text)
            if text.ndim != 2 or text.shape[1] != image.shape[1]:
                raise InvalidInput(f"text features must have shape (C, {image.shape[1]}); got {text.shape}")
            if not np.all(np.isfinite(text)):
                raise InvalidInput("text features contain NaN or inf values")
        if n_classes is None:
            n_classes = text.shape[0] if text is not None else int(labels.max()) + 1
        if text is not None and text.shape[0] != n_classes:
            raise InvalidInput(f"text features have {text.shape[0]} rows but the task has {n_classes} classes")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise InvalidInput(f"labels must lie in 0..{n_classes - 1}; found values in {labels.min()}..{labels.max()}")
        if len(np.unique(labels)) < 2:
            raise InvalidInput("labels contain a single class; transferability needs at least 2 classes")
        if source_logits is not None:
            source_logits = np.asarray(source_logits)
            if source_logits.ndim != 2 or source_logits.shape[0] != image.shape[0] or source_logits.shape[1] < 2:
                raise InvalidInput(f"source logits must have shape (N={image.shape[0]}, K >= 2); "
                                   f"got {source_logits.shape}")
            if not np.issubdtype(source_logits.dtype, np.number) or not np.all(np.isfinite(source_logits)):
                raise InvalidInput("source logits must be finite numbers")
            source_logits = _readonly(source_logits.astype(np.float32))
        for name, value in (("logit_scale", logit_scale), ("logit_bias", logit_bias)):
            if value is not None and not np.isfinite(float(value)):
                raise InvalidInput(f"{name} must be a finite number; got {value}")
        if normalise:
            image = l2_normalise(image)
            text = None if text is None else l2_normalise(text)
        else:
            image = image.astype(np.float32)
            text = None if text is None else text.astype(np.float32)
        return cls(image=_readonly(image), labels=_readonly(labels),
                   text=None if text is None else _readonly(text),
                   logit_scale=None if logit_scale is None else float(logit_scale),
                   logit_bias=None if logit_bias is None else float(logit_bias),
                   meta=dict(meta or {}), n_classes=int(n_classes), source_logits=source_logits)

    @property
    def n(self) -> int:
        return self.image.shape[0]

    @property
    def dim(self) -> int:
        return self.image.shape[1]

    def zero_shot_logits(self) -> np.ndarray:
        """``logit_scale * image @ text.T (+ logit_bias)`` in float64, shape (N, C)."""
        if self.text is None:
            raise InvalidInput("zero-shot logits need text features (class-prompt embeddings)")
        if self.logit_scale is None:
            raise InvalidInput("zero-shot logits need the encoder's logit_scale")
        logits = self.logit_scale * (self.image.astype(np.float64) @ self.text.astype(np.float64).T)
        return logits + (self.logit_bias or 0.0)

    def zero_shot_probs(self) -> np.ndarray:
        """The zero-shot "source model": ``softmax(logit_scale * image @ text.T)`` over the classes."""
        logits = self.zero_shot_logits()
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def source_probs(self) -> np.ndarray:
        """The source model's label probabilities, float64 (N, K): ``softmax(source_logits)`` when the
        encoder has its own source classifier (an ImageNet head), else the zero-shot classifier
        ``softmax(logit_scale * image @ text.T (+ logit_bias))`` over the task's classes."""
        if self.source_logits is None:
            return self.zero_shot_probs()
        logits = self.source_logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def source_labels(self) -> np.ndarray:
        """The source model's hard predictions (N,): argmax of ``source_logits`` when present, else of
        the zero-shot classifier ``image @ text.T`` (which needs neither logit_scale nor logit_bias)."""
        if self.source_logits is not None:
            return np.argmax(self.source_logits, axis=1)
        if self.text is None:
            raise InvalidInput("source labels need source logits or text features (class-prompt embeddings)")
        return np.argmax(self.image.astype(np.float64) @ self.text.astype(np.float64).T, axis=1)
