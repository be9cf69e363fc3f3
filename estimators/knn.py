"""Leave-one-out k-nearest-neighbour accuracy on the frozen features.

A non-parametric separability proxy: Sorkhei, Matsoukas, Fredin Haslum, Konuk, Smith,
"k-NN as a Simple and Effective Estimator of Transferability", TMLR 2025, arXiv 2503.18528
(42k experiments: k-NN beats 23 published estimators); a ranking estimator in
flairNLP/transformer-ranker (``estimators/nearestneighbors.py``).

For each sample i, let N_k(i) be its k nearest other samples (self excluded) under the
cosine similarity (default) or the Euclidean distance. The prediction is the majority
label in N_k(i); a tie between labels goes to the one held by the nearest of the tied
neighbours (equidistant neighbours count in index order; which of several samples tied
at the k-th distance enters N_k(i) is deterministic but unspecified). Then

    kNN = 1/N sum_i 1[prediction_i = y_i]                  (higher is better)

k is capped at N - 1. Similarities are computed in row blocks of at most ~4M entries,
so memory stays bounded (no N x N matrix); the cost is O(N^2 D).
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .common import check_features
from .errors import InvalidInput

_BLOCK_ENTRIES = 1 << 22  # similarities per block: 32 MiB of float64


def knn(features: np.ndarray, labels: np.ndarray, k: int = 10, metric: str = "cosine") -> float:
    """Leave-one-out k-NN accuracy of (N, D) features for (N,) integer labels."""
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    x, y = check_features(features, labels, min_per_class=2)
    n = len(y)
    k = min(k, n - 1)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise InvalidInput("cosine k-NN needs non-zero feature rows")
        x /= norms
        scale, offset = 1.0, np.zeros(n)
    elif metric == "euclidean":  # ||a - b||^2 = ||a||^2 - (2 a.b - ||b||^2): rank by the bracket
        scale, offset = 2.0, np.einsum("ij,ij->i", x, x)
    else:
        raise ValueError(f"metric must be 'cosine' or 'euclidean'; got {metric!r}")
    correct = 0
    step = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        similarity = scale * (x[rows] @ x.T) - offset
        similarity[np.arange(len(rows)), rows] = -np.inf
        candidates = np.argpartition(similarity, n - k, axis=1)[:, n - k:]
        order = np.lexsort((candidates, -np.take_along_axis(similarity, candidates, axis=1)), axis=1)
        votes = y[np.take_along_axis(candidates, order, axis=1)]  # (rows, k), nearest first
        counts = (votes[:, :, None] == votes[:, None, :]).sum(axis=2)
        predicted = votes[np.arange(len(rows)), counts.argmax(axis=1)]
        correct += int(np.sum(predicted == y[rows]))
    return correct / n


@register_estimator("knn")
class KNN(Estimator):
    __doc__ = __doc__
    baseline = True
    min_per_class = 2
    description = "leave-one-out k-nearest-neighbour accuracy (cosine, k=10)"
    citation = "Sorkhei et al., TMLR 2025, arXiv:2503.18528"

    def __init__(self, k: int = 10, metric: str = "cosine", random_state: int = 0):
        self.k = k
        self.metric = metric
        self.random_state = random_state

    def compute(self, emb):
        return knn(emb.image, emb.labels, self.k, self.metric)
