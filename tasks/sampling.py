"""Deterministic, class-balanced subsampling by ``(n, seed)``."""
from __future__ import annotations

import numpy as np


def class_quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over classes as evenly as their sizes allow (water-filling).

    Every class gets ``n // C`` items, the remainder goes to the lowest class
    indices; what a small class cannot supply is shared out over the others.
    ``n`` above ``counts.sum()`` gives every item.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quotas = np.zeros_like(counts)
    left = min(int(n), int(counts.sum()))
    while left > 0:
        open_ = np.flatnonzero(quotas < counts)
        share, extra = divmod(left, open_.size)
        add = np.full(open_.size, share, dtype=np.int64)
        add[:extra] += 1
        add = np.minimum(add, counts[open_] - quotas[open_])
        quotas[open_] += add
        left -= int(add.sum())
    return quotas


def balanced_indices(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted positions of a class-balanced sample of ``n`` items (all items when ``n`` is None).

    Class ``c`` draws its quota without replacement with ``np.random.default_rng([seed, c])``,
    so the same ``(labels, n, seed)`` always gives the same positions.
    """
    labels = np.asarray(labels)
    if n is None:
        return np.arange(labels.size, dtype=np.int64)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    chosen = []
    for c, quota in zip(classes, class_quotas(counts, n)):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([int(seed), int(c)])
        chosen.append(rng.choice(members, size=int(quota), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
