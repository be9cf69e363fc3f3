"""TransRate: coding rate of the features minus their mean coding rate within classes.

Huang, Huang, Ni, Zheng, Wang, Guo, "Frustratingly Easy Transferability Estimation",
ICML 2022, arXiv 2106.09362. The form implemented is TLlib's (tllib/ranking/transrate.py):

    R(Z)   = 1/2 logdet(I_D + Z^T Z / (n eps))              (Z: n rows, eps = 1e-4)
    TrR    = R(Z) - 1/C sum_c R(Z_c)                          (higher is better)

where Z is the column-centred feature matrix and Z_c its rows of class c (not re-centred);
the class term is an unweighted mean over the classes present. When Z has fewer rows
than columns, R is computed from the n x n Gram matrix instead, by
logdet(I_D + Z^T Z a) = logdet(I_n + Z Z^T a). The official code (Long-Kai/TransRate)
differs: it weights the class term by n_c / n and tunes eps per case.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .common import check_features


def coding_rate(z: np.ndarray, eps: float = 1e-4) -> float:
    """1/2 logdet(I + Z^T Z / (n eps)) of an (n, D) matrix, via the smaller Gram matrix."""
    n, d = z.shape
    gram = z @ z.T if n < d else z.T @ z
    gram /= n * eps
    gram[np.diag_indices_from(gram)] += 1.0
    return 0.5 * np.linalg.slogdet(gram)[1]


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = 1e-4) -> float:
    """TransRate (TLlib form) of (N, D) features for (N,) integer labels."""
    z, labels = check_features(features, labels)
    z -= z.mean(axis=0)
    order = np.argsort(labels, kind="stable")
    by_class = np.split(z[order], np.flatnonzero(np.diff(labels[order])) + 1)
    return float(coding_rate(z, eps) - np.mean([coding_rate(zc, eps) for zc in by_class]))


@register_estimator("transrate")
class TransRate(Estimator):
    __doc__ = __doc__
    description = "coding rate of the features minus the mean within-class coding rate"
    citation = "Huang et al., ICML 2022, arXiv:2106.09362"

    def __init__(self, eps: float = 1e-4, random_state: int = 0):
        super().__init__(random_state)
        self.eps = eps

    def compute(self, emb):
        return transrate(emb.image, emb.labels, self.eps)
