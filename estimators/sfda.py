"""SFDA: the Self-challenging Fisher Discriminant Analysis score.

Shao, Zhao, Ge, Zhang, Yang, Wang, Shan, Luo, "Not All Models Are Equal: Predicting
Model Transferability in a Self-challenging Fisher Space", ECCV 2022, arXiv 2207.03036
(reference code: github.com/TencentARC/SFDA, ``metrics.py::SFDA_Score``).

On features x_i with labels y_i over the K classes present (priors pi_c = N_c / N,
class means m_c):

    S_w     = 1/N sum_i (x_i - m_{y_i})(x_i - m_{y_i})^T               within-class scatter
    lambda  = max(exp(-5 lambda_max(S_w)), 1e-10)                        adaptive shrinkage
    S~_w    = (1 - lambda) S_w + lambda tr(S_w)/D I
    p(c|x)  = softmax_c(x^T S~_w^-1 m_c - 1/2 m_c^T S~_w^-1 m_c + log pi_c)   regularised FDA
    q_i     = softmax(p(.|x_i))_{y_i}                                    "softened" confidence
    x'_i    = q_i x_i + (1 - q_i) 1/(K-1) sum_{c != y_i} m_c             ConfMix self-challenge
    SFDA    = 1/N sum_i p'(y_i | x'_i)       (second FDA on x', same lambda; no log)

Higher is better; the score lies in (0, 1].

Differences from the reference, none of which changes the definition:

* The reference solves ``eigh(S_b, S~_w)`` and keeps all D eigenvectors V. As
  V^T S~_w V = I, its coefficients M V V^T equal M S~_w^-1, so S_b never enters p(c|x)
  and this module solves the linear system directly.
* lambda_max(S_w) is computed exactly; the reference estimates it with three
  power-iteration steps, which can only under-estimate it (slightly more shrinkage).
* The reference overwrites its input X in place during ConfMix; this works on a float64
  copy, and it re-indexes the labels so classes absent from them cannot misalign.

N < D (or N not well above D): S_w is singular and only the shrinkage keeps S~_w
invertible; the discriminant then fits the training points, p(y_i|x_i) -> 1 and SFDA
saturates at 1.0 for every encoder, as the reference does (SFDA issue #5). Reduce the
dimension first (e.g. PCA) when N is not comfortably larger than D.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.covariance import shrunk_covariance

from .base import Estimator, register_estimator
from .common import check_features, class_means, present_classes, softmax
from .errors import InvalidInput


def _fisher_posteriors(x: np.ndarray, y: np.ndarray, n_classes: int,
                       shrinkage: float | None = None) -> tuple[np.ndarray, float]:
    """(N, K) posteriors of the shrunk-covariance Fisher discriminant, and the shrinkage used."""
    n, d = x.shape
    means = class_means(x, y, n_classes)
    centred = x - means[y]
    within = centred.T @ centred / n
    if not np.trace(within) > 0:
        raise InvalidInput("every class is a single point (zero within-class scatter); SFDA is undefined")
    if shrinkage is None:
        top = linalg.eigvalsh(within, subset_by_index=[d - 1, d - 1])[0]
        shrinkage = max(np.exp(-5.0 * top), 1e-10)
    coef = linalg.solve(shrunk_covariance(within, shrinkage), means.T, assume_a="pos").T
    priors = np.bincount(y, minlength=n_classes) / n
    logits = x @ coef.T - 0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return softmax(logits), shrinkage


def sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA score of (N, D) features for (N,) integer labels (input arrays are not modified)."""
    x, labels = check_features(features, labels, min_per_class=2)
    _, y = present_classes(labels)
    n_classes = int(y.max()) + 1
    rows = np.arange(len(y))
    probs, shrinkage = _fisher_posteriors(x, y, n_classes)
    confidence = softmax(probs)[rows, y][:, None]
    means = class_means(x, y, n_classes)
    other_means = (means.sum(axis=0) - means) / (n_classes - 1)
    mixed = confidence * x + (1.0 - confidence) * other_means[y]
    probs, _ = _fisher_posteriors(mixed, y, n_classes, shrinkage)
    return float(np.mean(probs[rows, y]))


@register_estimator("sfda")
class SFDA(Estimator):
    __doc__ = __doc__
    min_per_class = 2
    description = "self-challenging Fisher discriminant: mean p(y|x) after ConfMix"
    citation = "Shao et al., ECCV 2022, arXiv:2207.03036"

    def compute(self, emb):
        return sfda(emb.image, emb.labels)
