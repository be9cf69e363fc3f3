"""LogME, H-score, regularised H-score, TransRate and GBC against published values and brute force.

Golden Iris values come from independent implementations (transformer-ranker's tests,
TLlib, google stable_transfer), each cross-checked against the others. The brute-force
checks write each definition out directly (dense D x D matrices, scipy optimisation,
explicit loops over class pairs) and never call the code under test to get the expectation.
"""
import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf
from sklearn.datasets import load_iris
from threadpoolctl import threadpool_limits

from estimators import EmbeddingSet, get_estimator, list_estimators
from estimators import gbc as gbc_module
from estimators.gbc import gbc
from estimators.hscore import hscore, hscore_reg, ledoit_wolf
from estimators.logme import logme
from estimators.transrate import transrate

NAMES = ["logme", "hscore", "hscore_reg", "transrate", "gbc", "gbc_spherical"]


@pytest.fixture(autouse=True, scope="module")
def single_blas_thread():
    """Small matrices only: BLAS threads cost far more than they give on a shared 2-core machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return x, y


def gaussian_classes(rng, n, d, c, spread=1.0):
    labels = np.arange(n) % c
    rng.shuffle(labels)
    return rng.standard_normal((c, d))[labels] * spread + rng.standard_normal((n, d)), labels


# -- golden values on Iris ------------------------------------------------------------
@pytest.mark.parametrize("fn, dtype, expected, rel", [
    (logme, np.float32, -0.16006022033609904, 1e-6),   # transformer-ranker test_logme.py
    (hscore, np.float64, 1.1918988250, 1e-9),          # TLlib h_score / official formula
    (hscore, np.float32, 1.1918988021, 1e-9),
    (hscore_reg, np.float32, 1.177842480406727, 1e-9),  # transformer-ranker test_hscore.py
    (lambda x, y: gbc(x, y, "spherical"), np.float64, -0.33780431, 2e-8),  # stable_transfer formula
    (lambda x, y: gbc(x, y, "diagonal"), np.float64, -0.23068558, 3e-8),
    (transrate, np.float32, 0.589405, 1e-6),            # TLlib transrate
])
def test_iris_golden(iris, fn, dtype, expected, rel):
    x, y = iris
    assert fn(x.astype(dtype), y) == pytest.approx(expected, rel=rel)


# -- LogME against direct maximisation of the evidence -----------------------------------
def direct_log_evidence(f, gram, y, log_alpha, log_beta):
    """L(alpha, beta) / N written out with A = alpha I + beta F^T F (gram = F^T F)."""
    n, d = f.shape
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    a = alpha * np.eye(d) + beta * gram
    m = beta * np.linalg.solve(a, f.T @ y)
    return (d * np.log(alpha) + n * np.log(beta) - n * np.log(2 * np.pi) - np.linalg.slogdet(a)[1]
            - beta * np.sum((y - f @ m) ** 2) - alpha * m @ m) / (2 * n)


def direct_logme(f, labels):
    """Mean over classes of the Nelder-Mead maximum over (log alpha, log beta), best of two starts.

    log beta is capped at 20: beyond it A is too ill-conditioned for the direct form (rounding
    noise then looks like evidence). For N < D a class can have its supremum at beta = inf (exact
    fit); the cap reaches that limit to ~1e-9 relative, well inside the test tolerance.
    """
    gram, scores = f.T @ f, []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        settings = {"method": "Nelder-Mead", "bounds": [(-10, 40), (-10, 20)],
                    "options": {"xatol": 1e-8, "fatol": 1e-13, "maxiter": 2000}}
        runs = [minimize(lambda p: -direct_log_evidence(f, gram, y, *p), start, **settings)
                for start in ([0.0, 0.0], [8.0, 1.0])]
        scores.append(max(-r.fun for r in runs))
    return float(np.mean(scores))


def rank_deficient(rng):
    f, labels = gaussian_classes(rng, 90, 30, 3, spread=0.3)
    return np.hstack([f, f[:, :12], 2 * f[:, 3:5]]), labels   # D = 44, rank 30


def duplicated_columns(rng):
    f = rng.standard_normal((40, 50))
    return np.hstack([f, f]), np.arange(40) % 4                # D = 100, rank 40 = N


@pytest.mark.parametrize("make", [
    lambda rng: gaussian_classes(rng, 50, 100, 3, spread=0.3),   # N < D
    lambda rng: gaussian_classes(rng, 120, 60, 3, spread=0.3),   # N > D
    rank_deficient,                                               # duplicated columns, N > D > rank
    duplicated_columns,                                           # duplicated columns, N = rank < D
], ids=["n<d", "n>d", "rank-deficient", "n<d-duplicated"])
def test_logme_matches_direct_evidence_maximisation(make):
    f, labels = make(np.random.default_rng(0))
    assert logme(f, labels) == pytest.approx(direct_logme(f, labels), rel=1e-6, abs=1e-8)


def test_logme_boundary_maximum_alpha_infinite():
    """Features orthogonal to every class indicator: the evidence rises with alpha, so the
    maximum is the alpha = inf limit (w = 0, beta = N / ||y||^2), known in closed form."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [30, 50, 40])
    indicators = np.eye(3)[labels]
    f = rng.standard_normal((120, 10))
    f -= indicators @ np.linalg.lstsq(indicators, f, rcond=None)[0]
    counts = np.bincount(labels)
    limit = np.mean(np.log(120 / counts) - np.log(2 * np.pi) - 1) / 2
    assert logme(f, labels) == pytest.approx(limit, rel=1e-9)


# -- H-score ---------------------------------------------------------------------------
def direct_hscore(f, labels):
    g = np.zeros_like(f)
    for c in np.unique(labels):
        g[labels == c] = f[labels == c].mean(axis=0)
    return np.trace(np.linalg.pinv(np.cov(f, rowvar=False), rcond=1e-15) @ np.cov(g, rowvar=False)), g


def test_hscore_matches_direct_computation():
    f, labels = gaussian_classes(np.random.default_rng(1), 400, 30, 6, spread=0.5)
    assert hscore(f, labels) == pytest.approx(direct_hscore(f, labels)[0], rel=1e-10)


def test_hscore_saturates_at_c_minus_1_when_n_le_d():
    f, labels = gaussian_classes(np.random.default_rng(2), 50, 100, 5)
    assert hscore(f, labels) == pytest.approx(4.0, rel=1e-8)


@pytest.mark.parametrize("n, d", [(300, 40), (50, 100)])
def test_hscore_reg_matches_sklearn_ledoit_wolf(n, d):
    f, labels = gaussian_classes(np.random.default_rng(3), n, d, 5, spread=0.5)
    f = f - f.mean(axis=0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    _, g = direct_hscore(f, labels)
    cov_g = np.cov(g, rowvar=False)
    expected = np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * cov_g))
    shrunk, alpha = ledoit_wolf(f)
    assert alpha == pytest.approx(lw.shrinkage_, rel=1e-10)
    np.testing.assert_allclose(shrunk, lw.covariance_, rtol=1e-10, atol=1e-14)
    assert hscore_reg(f, labels) == pytest.approx(expected, rel=1e-9)


# -- TransRate -------------------------------------------------------------------------
def direct_transrate(f, labels, eps=1e-4):
    def rate(z):
        n, d = z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))[1]
    z = f - f.mean(axis=0)
    return rate(z) - np.mean([rate(z[labels == c]) for c in np.unique(labels)])


@pytest.mark.parametrize("n, d", [(200, 60), (40, 80)])   # classes of 50 / 10 rows: the Gram path
def test_transrate_matches_direct_slogdet(n, d):
    f, labels = gaussian_classes(np.random.default_rng(4), n, d, 4, spread=0.5)
    assert transrate(f, labels) == pytest.approx(direct_transrate(f, labels), rel=1e-10)


# -- GBC -------------------------------------------------------------------------------
def direct_gbc(f, labels, gaussian_type):
    classes = np.unique(labels)
    mean = {c: f[labels == c].mean(axis=0) for c in classes}
    var = {c: np.maximum(f[labels == c].var(axis=0), 1e-4) for c in classes}
    if gaussian_type == "spherical":
        var = {c: np.array([v.mean()]) for c, v in var.items()}
    total = 0.0
    for i in classes:
        for j in classes:
            if i != j:
                avg = (var[i] + var[j]) / 2
                log_term = np.sum(np.log(avg)) - 0.5 * np.sum(np.log(var[i])) - 0.5 * np.sum(np.log(var[j]))
                db = np.sum((mean[i] - mean[j]) ** 2 / avg) / 8 + 0.5 * log_term
                total += np.exp(-db)
    return -total


@pytest.mark.parametrize("gaussian_type", ["diagonal", "spherical"])
def test_gbc_matches_pairwise_loop_across_blocks(monkeypatch, gaussian_type):
    f, labels = gaussian_classes(np.random.default_rng(5), 140, 12, 7, spread=0.15)
    f[:, 0] = 0.5                                    # a constant feature exercises the 1e-4 floor
    monkeypatch.setattr(gbc_module, "_BLOCK_ELEMENTS", 3 * 7 * 12)   # blocks of 3 rows
    assert gbc(f, labels, gaussian_type) == pytest.approx(direct_gbc(f, labels, gaussian_type), rel=1e-10)


# -- the registered estimators ---------------------------------------------------------
def test_registered_with_metadata():
    assert set(NAMES) <= set(list_estimators())
    assert get_estimator("gbc").gaussian_type == "diagonal"
    assert get_estimator("gbc_spherical").gaussian_type == "spherical"
    for name in NAMES:
        est = get_estimator(name)
        assert est.higher_is_better and est.measures_separability and est.citation and est.description


@pytest.mark.parametrize("name", NAMES)
def test_absent_classes_are_ignored_and_inputs_untouched(name):
    f, labels = gaussian_classes(np.random.default_rng(6), 90, 8, 3, spread=0.5)
    sparse = np.array([1, 4, 6])[labels]               # classes 0, 2, 3, 5 absent
    emb = EmbeddingSet.create(f, sparse, n_classes=7, normalise=False)
    compact = EmbeddingSet.create(f, labels, normalise=False)
    before = f.copy()
    est = get_estimator(name)
    assert est.score(emb) == pytest.approx(est.score(compact), rel=1e-12)
    fn = {"logme": logme, "hscore": hscore, "hscore_reg": hscore_reg, "transrate": transrate,
          "gbc": gbc, "gbc_spherical": lambda x, y: gbc(x, y, "spherical")}[name]
    assert fn(f, sparse) == pytest.approx(est.score(compact), rel=1e-6)   # float64 vs float32 input
    np.testing.assert_array_equal(f, before)


@pytest.mark.parametrize("name", NAMES)
def test_separable_classes_score_above_noise(name):
    rng = np.random.default_rng(7)
    f, labels = gaussian_classes(rng, 300, 16, 4, spread=3.0)
    est = get_estimator(name)
    separable = est.score(EmbeddingSet.create(f, labels))
    noise = est.score(EmbeddingSet.create(rng.standard_normal(f.shape), labels))
    assert separable > noise


def test_degenerate_input_raises_no_numpy_warning():
    """Issue 21: logme printed numpy RuntimeWarnings on degenerate input (now: a number or one
    InvalidInput line, and nothing on stderr)."""
    import warnings

    from estimators import EmbeddingSet, InvalidInput, get_estimator

    labels = np.repeat(np.arange(3), 4)
    emb = EmbeddingSet.create(np.ones((12, 64)), labels, text=np.random.default_rng(4).normal(size=(3, 64)),
                              logit_scale=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("logme", "hscore", "transrate", "nleep", "sfda"):
            try:
                get_estimator(name).score(emb)
            except InvalidInput:
                pass
