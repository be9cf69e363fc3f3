"""GBC: Gaussian Bhattacharyya Coefficient, the summed overlap of per-class Gaussians.

Pandy, Agostinelli, Uijlings, Ferrari, Mensink, "Transferability Estimation using
Bhattacharyya Class Separability", CVPR 2022, arXiv 2111.12780. Definition as in the
authors' code (google-research stable_transfer/transferability/gbc.py):

    GBC = - sum_i sum_{j != i} exp(-D_B(c_i, c_j))         (<= 0; 0 = separable, higher is better)
    D_B = 1/8 sum_d (mu_i - mu_j)^2 / s + 1/2 [ sum log s - 1/2 sum log s_i - 1/2 sum log s_j ],
    s   = (s_i + s_j) / 2,

with mu_c the class mean and s_c the per-dimension population variance of class c,
floored at 1e-4. ``diagonal``: s_c is that D-vector. ``spherical``: s_c is the mean of
the floored per-dimension variances, a scalar, so the log terms are single logs (not
multiplied by D, unlike the textbook spherical Gaussian); the reference does this. No
PCA is applied here (the paper reduces the features first). Vectorised over class pairs
in blocks of rows; only the classes present enter.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .common import check_features, class_means, class_sums, present_classes

GAUSSIAN_TYPES = ("diagonal", "spherical")
_BLOCK_ELEMENTS = 1 << 21  # class pairs x dimensions held at once


def gbc(features: np.ndarray, labels: np.ndarray, gaussian_type: str = "diagonal") -> float:
    """GBC of (N, D) features for (N,) integer labels, with diagonal or spherical class Gaussians."""
    if gaussian_type not in GAUSSIAN_TYPES:
        raise ValueError(f"gaussian_type must be one of {GAUSSIAN_TYPES}; got {gaussian_type!r}")
    f, labels = check_features(features, labels)
    _, labels = present_classes(labels)
    n_classes = labels.max() + 1
    mu = class_means(f, labels, n_classes)
    var = class_sums((f - mu[labels]) ** 2, labels, n_classes) / np.bincount(labels)[:, None]
    var = np.maximum(var, 1e-4)
    if gaussian_type == "spherical":
        var = var.mean(axis=1, keepdims=True)
    half_log_var = 0.5 * np.log(var).sum(axis=1)

    distance = np.empty((n_classes, n_classes))
    step = max(1, _BLOCK_ELEMENTS // (n_classes * mu.shape[1]))
    for start in range(0, n_classes, step):
        rows = slice(start, start + step)
        avg = (var[rows, None, :] + var[None, :, :]) / 2
        mahalanobis = (((mu[rows, None, :] - mu[None, :, :]) ** 2) / avg).sum(axis=2) / 8
        log_ratio = np.log(avg).sum(axis=2) - half_log_var[rows, None] - half_log_var[None, :]
        distance[rows] = mahalanobis + log_ratio / 2
    coefficient = np.exp(-distance)
    np.fill_diagonal(coefficient, 0.0)
    return float(-coefficient.sum())


@register_estimator("gbc")
class GBC(Estimator):
    __doc__ = __doc__
    min_per_class = 2
    description = "minus the summed Bhattacharyya coefficients between class Gaussians"
    citation = "Pandy et al., CVPR 2022, arXiv:2111.12780"

    def __init__(self, gaussian_type: str = "diagonal", random_state: int = 0):
        super().__init__(random_state)
        self.gaussian_type = gaussian_type

    def compute(self, emb):
        return gbc(emb.image, emb.labels, self.gaussian_type)


@register_estimator("gbc_spherical")
class GBCSpherical(GBC):
    """GBC with spherical class Gaussians (scalar variance per class), as in stable_transfer."""
    description = "GBC with spherical class Gaussians (stable_transfer definition)"

    def __init__(self, gaussian_type: str = "spherical", random_state: int = 0):
        super().__init__(gaussian_type, random_state)
