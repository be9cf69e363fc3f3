"""LogME: the maximum log evidence of Bayesian linear regression on the features.

You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021, arXiv 2102.11005; extended in JMLR 23 (2022).

For each class c, the one-vs-rest target y = 1[labels == c] is modelled as
y = F w + noise with w ~ N(0, 1/alpha I_D) and noise ~ N(0, 1/beta I_N). Its log evidence is

    L(alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi - 1/2 log|A|
                     - beta/2 ||y - F m||^2 - alpha/2 ||m||^2,
    A = alpha I_D + beta F^T F,    m = beta A^-1 F^T y,

and LogME = mean over the classes of max_{alpha, beta} L / N (higher is better).

With F = U diag(sigma) V^T of rank k, s_i = sigma_i^2 and z = U^T y, everything is O(k):

    log|A|       = sum_{i<=k} log(alpha + beta s_i) + (D - k) log alpha
    ||m||^2      = sum_i beta^2 s_i z_i^2 / (alpha + beta s_i)^2
    ||y - F m||^2 = ||y||^2 - ||z||^2 + sum_i alpha^2 z_i^2 / (alpha + beta s_i)^2

alpha and beta follow MacKay's fixed-point updates, gamma = sum_i beta s_i / (alpha + beta s_i),
alpha <- gamma / ||m||^2, beta <- (N - gamma) / ||y - F m||^2, to a relative change of 1e-6.
The supremum can lie on a boundary that the iteration only approaches: alpha = inf (w = 0,
beta = N / ||y||^2) and, when rank(F) = N, beta = inf (exact fit); both limits have closed
forms and the largest of the three values is taken.
The (D - k) log alpha term matters whenever rank(F) < D (e.g. N < D): the fixed-point code
of the reference repository (and its many copies) drops it and inflates the score.
The decomposition is one symmetric eigendecomposition of the smaller Gram matrix
(F^T F or F F^T), shared by all classes; no centring, as in the reference.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .common import check_features, class_sums, present_classes


def _spectrum(f: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, z): the k nonzero eigenvalues of F^T F and z = U^T Y (k, C) for one-hot targets Y."""
    n, d = f.shape
    n_classes = labels.max() + 1
    s, vecs = np.linalg.eigh(f.T @ f if n >= d else f @ f.T)
    keep = s > s.max() * max(n, d) * np.finfo(np.float64).eps
    s, vecs = s[keep], vecs[:, keep]
    if n >= d:  # U^T Y = diag(1/sigma) V^T F^T Y, and F^T Y holds the class sums
        z = (vecs.T @ class_sums(f, labels, n_classes).T) / np.sqrt(s)[:, None]
    else:       # U^T Y sums the rows of U over each class
        z = class_sums(vecs, labels, n_classes).T
    return s, z


def _max_log_evidence(s, z, y_sq, n, tol=1e-6, max_iter=1000):
    """Per-column max of L(alpha, beta) / N over alpha, beta in (0, inf]; s (k,), z (k, C), y_sq (C,)."""
    k = s.size
    s = s[:, None]
    z_sq = z ** 2
    # ||y - F F^+ y||^2, exactly 0 when rank(F) = N (then y is in range(F) = R^N)
    lstsq_res = np.maximum(y_sq - z_sq.sum(axis=0), 0.0) if k < n else np.zeros_like(y_sq)

    def moments(alpha, beta, cols):
        """gamma, ||m||^2 and ||y - F m||^2 of the columns cols."""
        t = alpha + beta * s
        gamma = (beta * s / t).sum(axis=0)
        m_sq = ((beta / t) ** 2 * s * z_sq[:, cols]).sum(axis=0)
        res_sq = lstsq_res[cols] + ((alpha / t) ** 2 * z_sq[:, cols]).sum(axis=0)
        return gamma, m_sq, res_sq

    alpha, beta = np.ones(z.shape[1]), np.ones(z.shape[1])
    active = np.arange(z.shape[1])
    for _ in range(max_iter):
        a, b = alpha[active], beta[active]
        gamma, m_sq, res_sq = moments(a, b, active)
        alpha[active], beta[active] = gamma / m_sq, (n - gamma) / res_sq
        # gamma -> 0 (w = 0) and n - gamma -> 0 (exact fit) are the flat limits alpha = inf and
        # beta = inf, where L has converged although the parameter keeps growing
        settled = (((np.abs(alpha[active] - a) <= tol * a) | (gamma <= tol))
                   & ((np.abs(beta[active] - b) <= tol * b) | (n - gamma <= tol)))
        active = active[~settled]
        if active.size == 0:
            break
    _, m_sq, res_sq = moments(alpha, beta, slice(None))
    # D log(alpha) - log|A| = -sum_{i<=k} log(1 + beta s_i / alpha): the (D - k) log(alpha) terms cancel
    log_ratio = np.log1p(beta * s / alpha).sum(axis=0)
    log_2pi = np.log(2 * np.pi)
    evidence = (n * np.log(beta) - n * log_2pi - log_ratio - beta * res_sq - alpha * m_sq) / 2
    # The two boundary limits in closed form, which the iteration only approaches (slowly when
    # nearly flat): alpha = inf (w = 0, beta = N / ||y||^2) and, when rank(F) = N, beta = inf
    # (exact fit by the minimum-norm m, alpha = N / ||m||^2 = N / sum_i z_i^2 / s_i).
    evidence = np.fmax(evidence, n * (np.log(n / y_sq) - log_2pi - 1) / 2)
    if k == n:
        alpha_fit = n / (z_sq / s).sum(axis=0)
        evidence = np.fmax(evidence, (n * np.log(alpha_fit) - np.log(s).sum() - n * log_2pi - n) / 2)
    return evidence / n


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of (N, D) features for (N,) integer class labels (classes absent from labels are ignored)."""
    f, labels = check_features(features, labels)
    _, labels = present_classes(labels)
    s, z = _spectrum(f, labels)
    return float(np.mean(_max_log_evidence(s, z, np.bincount(labels).astype(np.float64), f.shape[0])))


@register_estimator("logme")
class LogME(Estimator):
    __doc__ = __doc__
    description = "maximum log evidence of Bayesian ridge regression (exact, valid for N < D)"
    citation = "You et al., ICML 2021, arXiv:2102.11005; JMLR 2022"

    def compute(self, emb):
        return logme(emb.image, emb.labels)
