"""SFDA, NLEEP, NCTI, kNN and linear probe against brute force, independent code and known values."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import estimators.knn as knn_module
from estimators import EmbeddingSet, InvalidInput, get_estimator
from estimators.knn import knn
from estimators.linear_probe import linear_probe
from estimators.ncti import ncti, ncti_terms
from estimators.nleep import nleep
from estimators.sfda import sfda


def clusters(n_per_class, n_classes, dim, spread, seed=0):
    """Gaussian clusters around random unit centres; ``spread`` is the per-sample noise norm."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(labels.size, dim)) / np.sqrt(dim), labels


# -- kNN -------------------------------------------------------------------------------

@pytest.mark.parametrize("k, expected", [(1, 0.96), (3, 0.96), (5, 0.9666667), (13, 0.9666667)])
def test_knn_iris_golden_values(iris, k, expected):
    features, labels = iris  # transformer-ranker test_neighbors.py (Euclidean, leave-one-out)
    assert knn(features, labels, k=k, metric="euclidean") == pytest.approx(expected, abs=1e-6)


def brute_force_knn(features, labels, k, metric):
    x = np.asarray(features, dtype=np.float64)
    hits = 0
    for i in range(len(x)):
        if metric == "cosine":
            dist = [1 - x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) for j in range(len(x))]
        else:
            dist = [np.linalg.norm(x[i] - x[j]) for j in range(len(x))]
        neighbours = sorted((d, j) for j, d in enumerate(dist) if j != i)[:k]
        votes = [labels[j] for _, j in neighbours]
        counts = Counter(votes)
        best = max(counts.values())
        hits += next(v for v in votes if counts[v] == best) == labels[i]
    return hits / len(x)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_knn_matches_brute_force_across_blocks(monkeypatch, metric, k):
    features, labels = clusters(15, 4, 6, spread=1.5, seed=k)
    monkeypatch.setattr(knn_module, "_BLOCK_ENTRIES", 7 * len(labels))  # 7 rows per block
    assert knn(features, labels, k=k, metric=metric) == pytest.approx(brute_force_knn(features, labels, k, metric))


def test_knn_tie_goes_to_the_nearest_neighbours_class():
    # k=2 on a line; every sample sees a 1-1 tie, won by its nearest neighbour's class:
    # 0 -> (1: y1, -1.5: y0) -> 1 ok; 1 -> (0: y1, -1.5: y0) -> 1 ok;
    # -1.5 -> (0: y1, -3.5: y0) -> 1 wrong; -3.5 -> (-1.5: y0, 0: y1) -> 0 ok
    features = np.array([[0.0], [1.0], [-1.5], [-3.5]])
    labels = np.array([1, 1, 0, 0])
    assert knn(features, labels, k=2, metric="euclidean") == 0.75  # smallest/largest label first: 0.5


# -- SFDA ------------------------------------------------------------------------------

def independent_sfda(features, labels):
    """SFDA via scikit-learn's shrinkage LDA (same shrunk within-class covariance) and loops."""
    x = np.array(features, dtype=np.float64)
    classes = np.unique(labels)
    within = sum(np.mean(labels == c) * np.cov(x[labels == c].T, bias=True) for c in classes)
    shrinkage = max(np.exp(-5 * np.linalg.eigvalsh(within)[-1]), 1e-10)
    probs = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(x, labels).predict_proba(x)
    soft = np.exp(probs) / np.exp(probs).sum(axis=1, keepdims=True)
    means = np.array([x[labels == c].mean(axis=0) for c in classes])
    for i, c in enumerate(classes):
        rows = labels == c
        q = soft[rows, i][:, None]
        x[rows] = q * x[rows] + (1 - q) * np.delete(means, i, axis=0).mean(axis=0)
    probs = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(x, labels).predict_proba(x)
    return np.mean(probs[np.arange(len(labels)), np.searchsorted(classes, labels)])


def test_sfda_matches_an_independent_computation(iris):
    features, labels = iris
    assert sfda(features, labels) == pytest.approx(independent_sfda(features, labels), rel=1e-9)
    features, labels = clusters(40, 5, 12, spread=2.0, seed=1)
    labels = np.array([0, 2, 3, 7, 9])[labels]  # classes 1, 4, 5, 6, 8 absent
    assert sfda(features, labels) == pytest.approx(independent_sfda(features, labels), rel=1e-9)


def test_sfda_does_not_mutate_and_ranks_separable_above_noise(separable, noise):
    features, labels = clusters(20, 4, 16, spread=1.0)
    before = features.copy()
    sfda(features, labels)
    np.testing.assert_array_equal(features, before)
    sep, noi = sfda(separable.image, separable.labels), sfda(noise.image, noise.labels)
    assert sep > 0.9 and noi < 0.6 and sep > noi


def test_sfda_small_n_large_d_saturates_without_crashing():
    features, labels = clusters(5, 4, 200, spread=3.0)  # N = 20 < D = 200
    assert 0.9 < sfda(features, labels) <= 1.0


# -- NLEEP -----------------------------------------------------------------------------

def test_nleep_properties():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    one_hot_like = np.eye(8)[labels] + 0.01 * rng.normal(size=(120, 8))
    assert -0.05 < nleep(one_hot_like, labels) <= 1e-12
    random = rng.normal(size=(120, 8))
    assert nleep(random, labels) < -0.5
    assert nleep(random, labels, random_state=3) == nleep(random, labels, random_state=3)


# -- NCTI ------------------------------------------------------------------------------

def test_ncti_terms_match_sklearn_pca_and_lda():
    features, labels = clusters(60, 5, 80, spread=3.0, seed=2)
    z = PCA(n_components=64, svd_solver="full").fit(features)
    shrinkage = max(np.exp(-z.explained_variance_[:32].sum()), 1e-10)
    reduced = z.transform(features)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(reduced, labels)
    projected = lda.transform(reduced)
    probs = lda.predict_proba(reduced)
    expected = (np.linalg.norm(projected - projected.mean(axis=0), ord="nuc"),
                probs[np.arange(len(labels)), labels].mean(),
                np.log(sum(np.linalg.norm(probs[labels == c], ord="nuc") for c in range(5))))
    np.testing.assert_allclose(ncti_terms(features, labels), expected, rtol=1e-8)


def test_ncti_ranks_the_separable_encoder_first(pool):
    scores = get_estimator("ncti").score_pool(pool)
    assert max(scores, key=scores.get) == "separable"
    assert scores["separable"] > scores["overlapping"] and scores["separable"] > scores["noise"]


def test_ncti_pool_of_identical_encoders_is_finite_and_tied():
    features, labels = clusters(20, 3, 10, spread=1.0)
    scores = ncti({"a": (features, labels), "b": (features.copy(), labels)})
    assert scores == {"a": 0.0, "b": 0.0}


# -- linear probe ----------------------------------------------------------------------

def test_linear_probe_separable_and_noise():
    features, labels = clusters(40, 5, 20, spread=0.2)
    assert linear_probe(features, labels) >= 0.99
    rng = np.random.default_rng(0)
    assert abs(linear_probe(rng.normal(size=(1000, 10)), np.arange(1000) % 5) - 1 / 5) < 0.06  # chance


@pytest.mark.parametrize("function", [linear_probe, nleep])
def test_seeded_estimators_ignore_sample_order_and_label_names(function):
    features, labels = clusters(25, 4, 12, spread=3.0, seed=4)  # overlapping: scores depend on the split
    perm = np.random.default_rng(0).permutation(len(labels))
    renamed = np.array([3, 0, 2, 1])[labels]
    value = function(features, labels)
    assert function(features[perm], labels[perm]) == value
    assert function(features, renamed) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("function", [sfda, nleep, lambda f, y: ncti({"a": (f, y), "b": (f, y)})])
def test_identical_rows_are_a_clear_error(function):
    with pytest.raises(InvalidInput, match="identical|single point"):
        function(np.ones((12, 8)), np.repeat(np.arange(3), 4))


# -- all five through the Estimator API ------------------------------------------------

@pytest.mark.parametrize("name", ["sfda", "nleep", "ncti", "knn", "linear_probe"])
def test_registered_and_tolerate_absent_classes(name):
    features, labels = clusters(12, 3, 16, spread=1.0)
    emb = EmbeddingSet.create(features, np.array([0, 2, 4])[labels], n_classes=6)
    other = EmbeddingSet.create(features[::-1], np.array([0, 2, 4])[labels], n_classes=6)
    estimator = get_estimator(name, random_state=1)
    assert estimator.higher_is_better and estimator.random_state == 1
    if estimator.pool_relative:
        scores = estimator.score_pool({"a": emb, "b": other})
        assert set(scores) == {"a", "b"}
    else:
        assert np.isfinite(estimator.score(emb))
