"""The contract every registered estimator must meet, parametrised over the whole registry
(scikit-learn's ``parametrize_with_checks`` habit): an installed plugin is tested for free."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from estimators import EmbeddingSet, InvalidInput, MissingNeeds, estimator_class, get_estimator, list_estimators
from estimators.base import NEEDS
from tests.conftest import make_embeddings

NAMES = list_estimators()


def score(name: str, emb: EmbeddingSet, pool: dict | None = None, random_state: int = 0) -> float:
    """The estimator's score for ``emb``; pool-relative ones are scored inside ``pool``."""
    est = get_estimator(name, random_state=random_state)
    if est.pool_relative:
        members = dict(pool or {})
        members["target"] = emb
        return est.score_pool(members)["target"]
    return est.score(emb)


def reordered(emb: EmbeddingSet, seed: int = 1) -> EmbeddingSet:
    perm = np.random.default_rng(seed).permutation(emb.n)
    return EmbeddingSet.create(emb.image[perm], emb.labels[perm], text=emb.text,
                               logit_scale=emb.logit_scale, meta=emb.meta)


def relabelled(emb: EmbeddingSet, seed: int = 2) -> EmbeddingSet:
    perm = np.random.default_rng(seed).permutation(emb.n_classes)
    text = np.empty_like(emb.text)
    text[perm] = emb.text
    return EmbeddingSet.create(emb.image, perm[emb.labels], text=text, logit_scale=emb.logit_scale,
                               meta=emb.meta)


def fingerprint(emb: EmbeddingSet) -> str:
    return hashlib.sha256(emb.image.tobytes() + emb.labels.tobytes() + emb.text.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def others():
    """Two other encoders on the same task, for pool-relative estimators."""
    return {"overlapping": make_embeddings("overlapping", seed=5), "noise": make_embeddings("noise", seed=6)}


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_complete(name):
    cls = estimator_class(name)
    assert cls.name == name
    assert isinstance(cls.higher_is_better, bool)
    assert set(cls.needs) <= set(NEEDS)
    assert cls.version and cls.description and cls.citation
    doc = cls.__doc__ or ""
    assert len(doc) > 80, f"{name}: the docstring must give the formula and its source"


@pytest.mark.parametrize("name", NAMES)
def test_finite_float_and_deterministic(name, separable, others):
    first = score(name, separable, others, random_state=3)
    again = score(name, separable, others, random_state=3)
    assert isinstance(first, float) and np.isfinite(first)
    assert first == again


@pytest.mark.parametrize("name", NAMES)
def test_invariant_to_sample_order(name, separable, others):
    assert score(name, reordered(separable), others) == pytest.approx(score(name, separable, others),
                                                                       rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_invariant_to_relabelling_classes(name, separable, others):
    assert score(name, relabelled(separable), others) == pytest.approx(score(name, separable, others),
                                                                        rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_does_not_mutate_inputs(name, separable, others):
    before = fingerprint(separable)
    score(name, separable, others)
    assert fingerprint(separable) == before
    assert not separable.image.flags.writeable


@pytest.mark.parametrize("name", [n for n in NAMES if estimator_class(n).measures_separability])
def test_separable_classes_beat_noise(name):
    separable, noise = make_embeddings("separable", seed=11), make_embeddings("noise", seed=12)
    pool = {"overlapping": make_embeddings("overlapping", seed=13)}
    est = get_estimator(name)
    if est.pool_relative:
        scores = est.score_pool({"separable": separable, "noise": noise, **pool})
        good, bad = scores["separable"], scores["noise"]
    else:
        good, bad = est.score(separable), est.score(noise)
    assert (good > bad) if est.higher_is_better else (good < bad), f"{name}: separable {good} vs noise {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_input_gives_a_number_or_a_clear_error(name, others):
    """Identical image rows and N < D: either a finite score or InvalidInput, never NaN or a crash."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 4)
    text = rng.normal(size=(3, 64))
    cases = [EmbeddingSet.create(np.ones((12, 64)), labels, text=text, logit_scale=10.0),
             EmbeddingSet.create(rng.normal(size=(12, 64)), labels, text=text, logit_scale=10.0)]
    for emb in cases:
        try:
            value = score(name, emb, others)
        except InvalidInput as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert np.isfinite(value)


@pytest.mark.parametrize("name", [n for n in NAMES if estimator_class(n).min_per_class > 1])
def test_too_few_samples_per_class_is_a_clear_error(name, others):
    emb = make_embeddings("separable")
    keep = np.r_[np.flatnonzero(emb.labels != 0), np.flatnonzero(emb.labels == 0)[:1]]
    small = EmbeddingSet.create(emb.image[keep], emb.labels[keep], text=emb.text, logit_scale=emb.logit_scale)
    with pytest.raises(InvalidInput, match="per class"):
        score(name, small, others)


@pytest.mark.parametrize("name", [n for n in NAMES if estimator_class(n).needs])
def test_missing_needs_is_a_clear_error(name, separable, others):
    bare = EmbeddingSet.create(separable.image, separable.labels)
    with pytest.raises(MissingNeeds, match="needs"):
        score(name, bare, {k: EmbeddingSet.create(e.image, e.labels) for k, e in others.items()})


@pytest.mark.parametrize("name", NAMES)
def test_rejects_what_is_not_an_embedding_set(name):
    est = get_estimator(name)
    with pytest.raises(InvalidInput):
        est.score_pool({"a": np.zeros((3, 3)), "b": np.zeros((3, 3))}) if est.pool_relative \
            else est.score(np.zeros((3, 3)))
