"""LEEP, NCE and zero-shot accuracy against hand-computed and published values."""
import numpy as np
import pytest

from estimators import EmbeddingSet, get_estimator
from estimators.leep import leep_from_probs
from estimators.nce import nce


def test_leep_published_value():
    probs = np.array([[.9, .1], [.8, .2], [.3, .7], [.1, .9]])
    assert leep_from_probs(probs, np.array([0, 0, 1, 1])) == pytest.approx(-0.342615706, abs=1e-9)


def test_leep_bounds():
    labels = np.repeat(np.arange(3), 5)
    assert leep_from_probs(np.eye(3)[labels], labels) == pytest.approx(0.0, abs=1e-12)
    uniform = np.full((15, 4), 0.25)
    assert leep_from_probs(uniform, labels) == pytest.approx(np.log(1 / 3))


def test_leep_matches_a_loop_over_samples():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=40)
    labels = rng.integers(0, 3, size=40)
    joint = np.array([[probs[labels == y, z].sum() / 40 for z in range(5)] for y in range(3)])
    cond = joint / joint.sum(axis=0)
    expected = np.mean([np.log(sum(cond[labels[i], z] * probs[i, z] for z in range(5))) for i in range(40)])
    assert leep_from_probs(probs, labels) == pytest.approx(expected, rel=1e-12)


def test_leep_uses_the_zero_shot_classifier():
    image = np.array([[1, 0], [0.9, 0.1], [0.1, 0.9], [0, 1]], float)
    emb = EmbeddingSet.create(image, [0, 0, 1, 1], text=np.eye(2), logit_scale=5.0)
    assert get_estimator("leep").score(emb) == pytest.approx(leep_from_probs(emb.zero_shot_probs(), emb.labels))


def test_nce_values():
    y = np.array([0, 0, 1, 1])
    assert nce(np.array([5, 5, 7, 7]), y) == pytest.approx(0.0)           # bijective: H(Y|Z) = 0
    assert nce(np.zeros(4, int), y) == pytest.approx(-np.log(2))          # constant z: -H(Y)
    # z = [0, 0, 0, 1]: H(Y|Z) = 3/4 * H(2/3, 1/3)
    h = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert nce(np.array([0, 0, 0, 1]), y) == pytest.approx(-0.75 * h)


def test_zero_shot_accuracy_counts_argmax_hits():
    image = np.array([[1, 0], [0, 1], [1, 0.1], [0.2, 1]], float)
    emb = EmbeddingSet.create(image, [0, 1, 1, 1], text=np.eye(2))
    assert get_estimator("zero_shot_acc").score(emb) == pytest.approx(0.75)


def test_random_baseline_depends_on_seed_and_cell_only():
    a = EmbeddingSet.create(np.eye(4), [0, 1, 0, 1], meta={"encoder": "e1", "task": "t", "split": "train"})
    b = EmbeddingSet.create(np.eye(4), [0, 1, 0, 1], meta={"encoder": "e2", "task": "t", "split": "train"})
    random0, random1 = get_estimator("random", random_state=0), get_estimator("random", random_state=1)
    assert random0.score(a) == random0.score(a)
    assert random0.score(a) != random0.score(b)
    assert random0.score(a) != random1.score(a)
