"""IIMM against the brute-force O(N^2) definition of the paper and the reference code."""
import numpy as np
import pytest

from estimators import EmbeddingSet, get_estimator
from estimators.iimm import iimm, iimm_inter, iimm_intra, modality_gap


def brute_force(image, labels, text):
    """Literal transcription of the formulas in arXiv 2407.15731 (double loops)."""
    n, c = len(image), len(text)
    inter = np.mean([np.mean([image[i] @ text[k] for k in range(c) if k != labels[i]]) for i in range(n)])
    pairs = [image[i] @ image[j] for i in range(n) for j in range(i + 1, n)]
    return (inter + np.mean(pairs)) / 2, inter, np.mean(pairs)


@pytest.mark.parametrize("n, d, c, seed", [(30, 8, 3, 0), (57, 16, 7, 1), (12, 64, 2, 2)])
def test_matches_brute_force(n, d, c, seed):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, d)) + rng.normal(size=d)  # a shared offset makes S_intra non-trivial
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text = rng.normal(size=(c, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    labels = rng.integers(0, c, size=n)
    total, inter, intra = brute_force(image, labels, text)
    assert iimm(image, labels, text) == pytest.approx(total, abs=1e-12)
    assert iimm_inter(image, labels, text) == pytest.approx(inter, abs=1e-12)
    assert iimm_intra(image) == pytest.approx(intra, abs=1e-12)


def test_published_tiny_example():
    """X = [e1, e2, (e1+e2)/sqrt 2], T = [e1, e2], y = [0, 1, 0] -> 0.35355339. By hand: the inter-modal term
    averages each image's similarity to the other class, (0 + 0 + 1/sqrt 2) / 3; the intra-image term the pairs,
    (0 + 1/sqrt 2 + 1/sqrt 2) / 3; IIMM is their mean, 1 / (2 sqrt 2)."""
    image = np.array([[1, 0], [0, 1], [1, 1]], float)
    emb = EmbeddingSet.create(image, [0, 1, 0], text=np.eye(2))
    assert get_estimator("iimm").score(emb) == pytest.approx(0.35355339, abs=1e-7)


def test_modality_gap_is_the_distance_between_the_means():
    image = np.array([[1.0, 0.0], [1.0, 0.0]])
    text = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert modality_gap(image, text) == pytest.approx(np.sqrt(2))
