"""EmbeddingSet validation: bad input is one clear InvalidInput, good input is read-only and normalised."""
import numpy as np
import pytest

from estimators import EmbeddingSet, InvalidInput

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 4))
Y = np.array([0, 0, 1, 1, 2, 2])
T = RNG.normal(size=(3, 4))


def test_rows_are_unit_norm_float32_and_read_only():
    emb = EmbeddingSet.create(X, Y, text=T, logit_scale=100.0)
    assert emb.image.dtype == np.float32 and emb.labels.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(emb.image, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb.text, axis=1), 1, rtol=1e-6)
    for array in (emb.image, emb.labels, emb.text):
        with pytest.raises(ValueError):
            array[0] = 0
    assert emb.n_classes == 3


def test_zero_shot_probs_are_the_softmax_of_scaled_cosines():
    emb = EmbeddingSet.create(X, Y, text=T, logit_scale=10.0, logit_bias=-2.0)
    cos = emb.image.astype(float) @ emb.text.astype(float).T
    expected = np.exp(10 * cos - 2) / np.exp(10 * cos - 2).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(emb.zero_shot_probs(), expected, rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=np.where(np.eye(6, 4) == 1, np.nan, X), labels=Y), "NaN or inf"),
    (dict(image=np.where(np.eye(6, 4) == 1, np.inf, X), labels=Y), "NaN or inf"),
    (dict(image=X, labels=Y[:5]), "5 entries"),
    (dict(image=X, labels=np.zeros(6, int)), "single class"),
    (dict(image=X, labels=Y, text=T, n_classes=2), "3 rows"),
    (dict(image=X, labels=Y + 1, text=T), r"0\.\.2"),
    (dict(image=X, labels=Y - 1), r"must lie in"),
    (dict(image=X, labels=Y + 0.5), "integers"),
    (dict(image=X[:, 0], labels=Y), "2-D"),
    (dict(image=X, labels=Y, text=T[:, :3]), "shape"),
    (dict(image=np.zeros((6, 4)), labels=Y), "all zero"),
    (dict(image=X, labels=Y, logit_scale=float("nan")), "logit_scale"),
])
def test_bad_input_names_the_problem(kwargs, message):
    with pytest.raises(InvalidInput, match=message) as info:
        EmbeddingSet.create(**kwargs)
    assert "\n" not in str(info.value)


def test_features_whose_norm_overflows_are_refused_in_one_line():
    """Issue 21: rows near 1e300 used to be zeroed by normalisation and scored with RuntimeWarnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInput, match="too large to normalise"):
            EmbeddingSet.create(np.full((6, 4), 1e300), np.repeat(np.arange(3), 2))
