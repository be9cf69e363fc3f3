"""Small numpy helpers shared by several estimators (float64 throughout)."""
from __future__ import annotations

import numpy as np

from .errors import InvalidInput


def as_float64(x: np.ndarray) -> np.ndarray:
    """A fresh float64 copy, so an estimator can never write into a shared (cached) array."""
    return np.array(x, dtype=np.float64, copy=True)


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=n_classes)


def class_sums(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) per-class sums, via sort + reduceat (O(N*D), no (C, N) one-hot matmul)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sums = np.zeros((n_classes, features.shape[1]), dtype=np.float64)
    sums[sorted_labels[starts]] = np.add.reduceat(features[order], starts, axis=0)
    return sums


def class_means(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) per-class means; rows of absent classes are zero."""
    counts = class_counts(labels, n_classes)
    return class_sums(features, labels, n_classes) / np.maximum(counts, 1)[:, None]


def present_classes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes present, labels re-indexed to 0..K-1 over the present classes)."""
    classes, relabelled = np.unique(labels, return_inverse=True)
    return classes, relabelled


def check_features(features: np.ndarray, labels: np.ndarray, min_per_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate raw (features, labels) for the functional API; returns float64 copies / int64 labels."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] == 0:
        raise InvalidInput(f"features must be a non-empty 2-D array; got shape {features.shape}")
    if labels.shape != (features.shape[0],):
        raise InvalidInput(f"labels must have shape ({features.shape[0]},); got {labels.shape}")
    if not np.all(np.isfinite(features)):
        raise InvalidInput("features contain NaN or inf values")
    if labels.dtype.kind not in "iu":
        raise InvalidInput(f"labels must be integers; got dtype {labels.dtype}")
    if labels.min() < 0:
        raise InvalidInput("labels must be non-negative class indices")
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if counts.size < 2:
        raise InvalidInput("labels contain a single class; at least 2 are needed")
    if counts.min() < min_per_class:
        raise InvalidInput(f"every class needs at least {min_per_class} samples; the smallest has {counts.min()}")
    return as_float64(features), labels.astype(np.int64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def content_order(x: np.ndarray) -> np.ndarray:
    """A row permutation that depends only on the rows' bytes: sorting by it makes seeded
    splits and initialisations independent of the order in which samples arrive."""
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.itemsize * x.shape[1]))).ravel()
    return np.argsort(rows, kind="stable")
