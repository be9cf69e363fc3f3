"""H-score and its Ledoit-Wolf regularised form H_alpha.

H-score: Bao, Li, Huang, Zheng, Zhong, "An Information-Theoretic Approach to
Transferability in Task Transfer Learning", ICIP 2019:

    H = tr( pinv(cov(F)) cov(G) ),    G_i = mean of the features of class y_i,

with unbiased (N - 1) covariances of the centred features and pinv(rcond=1e-15), in
float64. With N <= D the pseudo-inverse makes H saturate at C - 1.

H_alpha: Ibrahim, Ponomareva, Mazumder, "Newer is not always better: Rethinking
transferability metrics, their peculiarities, stability and performance", ICLR 2023
(openreview iz_Wwmfquno):

    H_alpha = tr( cov_alpha(F)^-1 (1 - alpha) cov(G) ),
    cov_alpha(F) = (1 - alpha) S + alpha mu I,    S = F_c^T F_c / N,   mu = tr(S) / D,

with the Ledoit-Wolf (2004) shrinkage alpha = min(b2, d2) / d2 computed in closed form,
d2 = ||S - mu I||_F^2 / D and b2 = (mean_i ||f_i||^4 - ||S||_F^2) / (N D) on the centred
rows f_i, as in scikit-learn's LedoitWolf (used by the TLlib reference). cov(G) stays
unbiased. Both are higher-is-better; cov(G) = M^T M / (N - 1) with rows
M_c = sqrt(n_c) (class mean - mean), so only the classes present enter.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .common import check_features, class_means, present_classes


def _centred_and_between(features, labels):
    """Centred float64 features and M (C, D), the sqrt(n_c)-weighted centred class means."""
    f, labels = check_features(features, labels)
    _, labels = present_classes(labels)
    f -= f.mean(axis=0)
    counts = np.bincount(labels)
    return f, np.sqrt(counts)[:, None] * class_means(f, labels, counts.size)


def _trace_pinv_times(cov: np.ndarray, m: np.ndarray) -> float:
    """tr(pinv(cov) M^T M) for a symmetric cov, without forming the D x D product."""
    return float(np.einsum("cd,cd->", m @ np.linalg.pinv(cov, rcond=1e-15, hermitian=True), m))


def ledoit_wolf(centred: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance, shrinkage alpha) of already-centred rows, Ledoit & Wolf (2004)."""
    n, d = centred.shape
    s = centred.T @ centred / n
    mu = np.trace(s) / d
    s_norm_sq = np.einsum("ij,ij->", s, s)
    d2 = (s_norm_sq - d * mu ** 2) / d
    b2 = (np.mean(np.einsum("ij,ij->i", centred, centred) ** 2) - s_norm_sq) / (n * d)
    alpha = float(min(b2, d2) / d2) if d2 > 0 else 0.0
    shrunk = (1 - alpha) * s
    shrunk[np.diag_indices(d)] += alpha * mu
    return shrunk, alpha


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score tr(pinv(cov F) cov G) of (N, D) features for (N,) integer labels."""
    f, m = _centred_and_between(features, labels)
    n = f.shape[0]
    return _trace_pinv_times(f.T @ f / (n - 1), m) / (n - 1)


def hscore_reg(features: np.ndarray, labels: np.ndarray) -> float:
    """Ledoit-Wolf regularised H-score H_alpha of (N, D) features for (N,) integer labels."""
    f, m = _centred_and_between(features, labels)
    cov_alpha, alpha = ledoit_wolf(f)
    return float((1 - alpha) * _trace_pinv_times(cov_alpha, m) / (f.shape[0] - 1))


def working_memory(n: int, d: int) -> int:
    """Peak bytes of either H-score: float64 centred features (N x D) twice, and about six
    D x D matrices (covariance, its eigen-decomposition with LAPACK workspace, the pseudo-inverse)."""
    return 8 * (2 * n * d + 6 * d * d)


@register_estimator("hscore")
class HScore(Estimator):
    __doc__ = __doc__
    description = "H-score: tr(pinv(cov F) cov E[F|y]); saturates at C-1 when N <= D"
    citation = "Bao et al., ICIP 2019"

    def memory_bytes(self, n, d, c):
        return working_memory(n, d)

    def compute(self, emb):
        return hscore(emb.image, emb.labels)


@register_estimator("hscore_reg")
class HScoreRegularised(Estimator):
    __doc__ = __doc__
    description = "H-score with Ledoit-Wolf shrinkage of cov F (H_alpha)"
    citation = "Ibrahim, Ponomareva, Mazumder, ICLR 2023"

    def memory_bytes(self, n, d, c):
        return working_memory(n, d)

    def compute(self, emb):
        return hscore_reg(emb.image, emb.labels)
