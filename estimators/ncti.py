"""NCTI: the Neural Collapse Transferability Index (pool-relative).

Wang, Luo, Zheng, Huang, Baktashmotlagh, "How Far Pre-trained Models Are from Neural
Collapse on the Target Dataset Informs their Transferability", ICCV 2023, pp. 5549-5558
(reference code: github.com/BUserName/NCTI, ``metrics.py::NCTI_Score`` and the pool
normalisation in ``evaluate_metric_group1_cpu.py``; the copy in mit-ll/IIMM
``transferability_metrics.py`` is the same).

Per encoder, on its features reduced by PCA to Z (N, 64) with explained variances v_1 >= v_2 >= ...:

    lambda  = max(exp(-(v_1 + ... + v_32)), 1e-10)                     LDA shrinkage
    S~_w    = (1 - lambda) S_w + lambda tr(S_w)/64 I,  S~_t likewise,  S~_b = S~_t - S~_w
    W       = top K-1 generalised eigenvectors of (S~_b, S~_w), W^T S~_w W = I
    seli    = || (Z - mean Z) W ||_*          (nuclear norm: the sum of the singular values)
    P       = LDA posteriors, p(c|z) = softmax_c(z^T S~_w^-1 m_c - 1/2 m_c^T S~_w^-1 m_c + log pi_c)
    ncc     = 1/N sum_i P[i, y_i]
    vc      = log sum_c || P[y == c] ||_*          (nuclear norms of each class's posterior rows)

and over a pool of encoders on the same task (minmax(s) = (s - min s) / (max s - min s)):

    NCTI = minmax(ncc) + minmax(seli) - minmax(vc)          (higher is better)

seli rewards features that spread over many discriminant directions, ncc rewards
nearest-class-centre separability and vc penalises within-class variability; the three
are only comparable after the pool-wide min-max, so NCTI is pool-relative.

Differences from the reference: PCA is an exact eigendecomposition (deterministic);
a term that is constant over the pool contributes 0 (the reference divides by zero);
labels are re-indexed to the classes present. Where lambda hits its 1e-10 floor the
reference switches to scikit-learn's unshrunk ``svd`` LDA solver; the closed form with
lambda = 1e-10 gives the same three terms (checked against scikit-learn 1.9's solvers to
1e-10 relative). L2-normalised embeddings never reach the floor: their total variance
is <= 1, so lambda >= 1/e.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import linalg
from sklearn.covariance import shrunk_covariance

from .base import Estimator, register_estimator
from .common import check_features, class_means, present_classes, softmax
from .errors import InvalidInput

#: explained variances summed for the LDA shrinkage (hard-coded in the reference)
_SHRINKAGE_COMPONENTS = 32


def ncti_terms(features: np.ndarray, labels: np.ndarray, n_components: int = 64) -> tuple[float, float, float]:
    """(seli, ncc, vc) of one encoder's (N, D) features for (N,) integer labels."""
    x, labels = check_features(features, labels, min_per_class=2)
    _, y = present_classes(labels)
    n, d = x.shape
    n_classes = int(y.max()) + 1
    x -= x.mean(axis=0)
    variances, axes = np.linalg.eigh(x.T @ x / (n - 1))  # ascending
    keep = min(n_components, n, d)
    variances, axes = variances[::-1][:keep], axes[:, ::-1][:, :keep]
    z = x @ axes  # centred PCA scores
    shrinkage = max(np.exp(-variances[:_SHRINKAGE_COMPONENTS].sum()), 1e-10)

    means = class_means(z, y, n_classes)
    centred = z - means[y]
    within = shrunk_covariance(centred.T @ centred / n, shrinkage)
    if not np.trace(within) > 0:
        raise InvalidInput("every class is a single point (zero within-class scatter); NCTI's LDA is undefined")
    total = shrunk_covariance(z.T @ z / n, shrinkage)
    _, vectors = linalg.eigh(total - within, within)  # ascending; vectors.T @ within @ vectors = I
    discriminant = vectors[:, ::-1][:, :n_classes - 1]
    seli = np.linalg.svd(z @ discriminant, compute_uv=False).sum()  # z @ discriminant is centred

    coef = means @ vectors @ vectors.T  # = means @ inv(within)
    priors = np.bincount(y) / n
    probs = softmax(z @ coef.T - 0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors))
    ncc = np.mean(probs[np.arange(n), y])
    vc = np.log(sum(np.linalg.svd(probs[y == c], compute_uv=False).sum() for c in range(n_classes)))
    return float(seli), float(ncc), float(vc)


def _minmax(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def ncti(pool: Mapping[str, tuple[np.ndarray, np.ndarray]], n_components: int = 64) -> dict[str, float]:
    """NCTI of each encoder in ``{encoder_id: (features, labels)}`` (one task, >= 2 encoders)."""
    seli, ncc, vc = np.array([ncti_terms(f, y, n_components) for f, y in pool.values()]).T
    scores = _minmax(ncc) + _minmax(seli) - _minmax(vc)
    return dict(zip(pool, scores.tolist()))


@register_estimator("ncti")
class NCTI(Estimator):
    __doc__ = __doc__
    pool_relative = True
    min_per_class = 2
    description = "neural-collapse index: minmax(ncc) + minmax(seli) - minmax(vc) over the pool"
    citation = "Wang et al., ICCV 2023, pp. 5549-5558"

    def __init__(self, n_components: int = 64, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def compute_pool(self, embs):
        return ncti({k: (e.image, e.labels) for k, e in embs.items()}, self.n_components)
