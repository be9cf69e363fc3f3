"""Cross-validated linear-probe accuracy on the frozen features.

The classic representation-quality baseline (CLIP's linear-probe protocol: Radford et al.,
"Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
arXiv 2103.00020; used as a transferability baseline by PACTran, Ding et al., ECCV 2022,
``calculate_linear_valerr``). With stratified K-fold splits (shuffled, seeded by
``random_state``), each fold standardises the features on its training part and fits an
L2-regularised multinomial logistic regression,

    min_W,b  1/2 ||W||^2 + C sum_{i in train} -log softmax(W x_i + b)_{y_i},

and the score is the accuracy over all held-out predictions (each sample predicted once;
the folds depend on the samples' contents, not on their order or the label names):

    probe = 1/N sum_i 1[argmax_c (W^(fold(i)) x_i + b^(fold(i)))_c = y_i]      (higher is better)

Settings, chosen for speed (~1.5 s at N=10,000, D=512, K=100 with one BLAS thread; the
budget is 5 s on two CPU cores): ``n_folds=3`` (every class needs 3 samples), C=1, and
scikit-learn's L-BFGS solver on standardised features (which it needs to converge in a
few steps) with ``max_iter=100``; a fit that stops at the cap is used as is (its
ConvergenceWarning is silenced).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .base import Estimator, register_estimator
from .common import check_features, content_order


def linear_probe(features: np.ndarray, labels: np.ndarray, n_folds: int = 3, C: float = 1.0,
                 max_iter: int = 100, random_state: int = 0) -> float:
    """Stratified K-fold accuracy of a logistic-regression probe on (N, D) features."""
    x, y = check_features(features, labels, min_per_class=n_folds)
    order = content_order(x)
    x, y = x[order], y[order]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        predicted = cross_val_predict(probe, x, y, cv=folds)
    return float(np.mean(predicted == y))


@register_estimator("linear_probe")
class LinearProbe(Estimator):
    __doc__ = __doc__
    baseline = True
    min_per_class = 3
    description = "3-fold cross-validated accuracy of a logistic-regression probe"
    citation = "Radford et al., ICML 2021, arXiv:2103.00020"

    def __init__(self, n_folds: int = 3, C: float = 1.0, max_iter: int = 100, random_state: int = 0):
        self.n_folds = n_folds
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def compute(self, emb):
        return linear_probe(emb.image, emb.labels, self.n_folds, self.C, self.max_iter, self.random_state)
