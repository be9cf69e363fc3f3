"""The estimator contract as library functions, in scikit-learn's shape (``check_estimator``,
``parametrize_with_checks``), so a plugin author tests a new estimator with one import:

    from estimators.checks import check_estimator
    check_estimator("fisher_ratio")          # raises AssertionError naming the broken rule

    from estimators.checks import parametrize_with_checks
    @parametrize_with_checks(["fisher_ratio"])   # one pytest case per (estimator, check)
    def test_contract(name, check):
        check(name)

Every check takes a registered estimator name and raises ``AssertionError`` with the reason. The
data are synthetic (``synthetic``: clusters around orthogonal class centres, isotropic noise, or
overlapping clusters), numpy only; pool-relative estimators are scored inside a pool of two others.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .base import NEEDS, MissingNeeds, estimator_class, get_estimator, list_estimators
from .embedding_set import EmbeddingSet
from .errors import InvalidInput


def synthetic(kind: str, n_per_class: int = 20, n_classes: int = 4, dim: int = 16, seed: int = 0,
              **meta) -> EmbeddingSet:
    """``separable``: tight clusters around orthogonal class centres, class prompts at the centres.
    ``noise``: isotropic features unrelated to the labels, same prompts.
    ``overlapping``: clusters whose spread swamps the distance between centres."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, n_classes)))[0].T
    labels = np.repeat(np.arange(n_classes), n_per_class)
    spread = {"separable": 0.1, "overlapping": 2.0, "noise": None}[kind]
    if spread is None:
        image = rng.normal(size=(labels.size, dim))
    else:
        image = centres[labels] + spread * rng.normal(size=(labels.size, dim)) / np.sqrt(dim)
    text = centres + 0.05 * rng.normal(size=centres.shape)
    return EmbeddingSet.create(image, labels, text=text, logit_scale=50.0,
                               meta={"encoder": f"synthetic-{kind}", "task": "toy", "split": "train", **meta})


def _others() -> dict[str, EmbeddingSet]:
    """Two other encoders on the same task, for pool-relative estimators."""
    return {"overlapping": synthetic("overlapping", seed=5), "noise": synthetic("noise", seed=6)}


def _score(name: str, emb: EmbeddingSet, pool: dict | None = None, random_state: int = 0) -> float:
    est = get_estimator(name, random_state=random_state)
    if est.pool_relative:
        return est.score_pool({**(_others() if pool is None else pool), "target": emb})["target"]
    return est.score(emb)


def _close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-6, atol=1e-9))


def check_metadata(name: str) -> None:
    """Name, direction, needs, version, description, citation, and a docstring with the formula."""
    cls = estimator_class(name)
    assert cls.name == name, f"{name}: registered as {name!r} but its name is {cls.name!r}"
    assert isinstance(cls.higher_is_better, bool), f"{name}: higher_is_better must be True or False"
    assert isinstance(cls.baseline, bool), f"{name}: baseline must be True or False"
    assert set(cls.needs) <= set(NEEDS), f"{name}: needs {cls.needs} outside {NEEDS}"
    assert cls.version and cls.description and cls.citation, f"{name}: version, description and citation"
    assert len(cls.__doc__ or "") > 80, f"{name}: the docstring must give the formula and its source"


def check_finite_and_deterministic(name: str) -> None:
    """A finite float, the same for the same random_state."""
    emb = synthetic("separable")
    first, again = _score(name, emb, random_state=3), _score(name, emb, random_state=3)
    assert isinstance(first, float) and np.isfinite(first), f"{name}: score {first!r} is not a finite float"
    assert first == again, f"{name}: {first} then {again} with the same random_state"


def check_invariant_to_sample_order(name: str) -> None:
    emb = synthetic("separable")
    perm = np.random.default_rng(1).permutation(emb.n)
    shuffled = EmbeddingSet.create(emb.image[perm], emb.labels[perm], text=emb.text, logit_scale=emb.logit_scale,
                                   meta=emb.meta)
    a, b = _score(name, emb), _score(name, shuffled)
    assert _close(a, b), f"{name}: {a} before and {b} after shuffling the samples"


def check_invariant_to_relabelling_classes(name: str) -> None:
    emb = synthetic("separable")
    perm = np.random.default_rng(2).permutation(emb.n_classes)
    text = np.empty_like(emb.text)
    text[perm] = emb.text
    renamed = EmbeddingSet.create(emb.image, perm[emb.labels], text=text, logit_scale=emb.logit_scale, meta=emb.meta)
    a, b = _score(name, emb), _score(name, renamed)
    assert _close(a, b), f"{name}: {a} before and {b} after renumbering the classes"


def check_does_not_mutate_inputs(name: str) -> None:
    emb = synthetic("separable")

    def fingerprint():
        return hashlib.sha256(emb.image.tobytes() + emb.labels.tobytes() + emb.text.tobytes()).hexdigest()

    before = fingerprint()
    _score(name, emb)
    assert fingerprint() == before, f"{name}: changed the embeddings it was given"
    assert not emb.image.flags.writeable, f"{name}: left the image array writeable"


def check_separable_classes_beat_noise(name: str) -> None:
    """In the declared direction, for estimators that declare they measure class separability."""
    separable, noise = synthetic("separable", seed=11), synthetic("noise", seed=12)
    est = get_estimator(name)
    if est.pool_relative:
        scores = est.score_pool({"separable": separable, "noise": noise,
                                 "overlapping": synthetic("overlapping", seed=13)})
        good, bad = scores["separable"], scores["noise"]
    else:
        good, bad = est.score(separable), est.score(noise)
    assert (good > bad) if est.higher_is_better else (good < bad), f"{name}: separable {good} vs noise {bad}"


def check_degenerate_input(name: str) -> None:
    """Identical image rows and N < D: a finite score or one InvalidInput line, never NaN or a crash."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 4)
    text = rng.normal(size=(3, 64))
    for emb in (EmbeddingSet.create(np.ones((12, 64)), labels, text=text, logit_scale=10.0),
                EmbeddingSet.create(rng.normal(size=(12, 64)), labels, text=text, logit_scale=10.0)):
        try:
            value = _score(name, emb)
        except InvalidInput as exc:
            assert str(exc) and "\n" not in str(exc), f"{name}: the error must be one line, got {exc!r}"
        else:
            assert np.isfinite(value), f"{name}: {value} on degenerate input (raise InvalidInput instead)"


def check_too_few_samples_per_class(name: str) -> None:
    """For estimators with ``min_per_class > 1``: a class below it is an InvalidInput naming it."""
    emb = synthetic("separable")
    keep = np.r_[np.flatnonzero(emb.labels != 0), np.flatnonzero(emb.labels == 0)[:1]]
    small = EmbeddingSet.create(emb.image[keep], emb.labels[keep], text=emb.text, logit_scale=emb.logit_scale)
    try:
        _score(name, small)
    except InvalidInput as exc:
        assert "per class" in str(exc), f"{name}: the error should say 'per class', got {exc}"
    else:
        raise AssertionError(f"{name}: scored a class of 1 sample though min_per_class > 1")


def check_missing_needs(name: str) -> None:
    """For estimators that need text or logits: their absence is a MissingNeeds naming it."""
    emb = synthetic("separable")
    bare = {k: EmbeddingSet.create(e.image, e.labels) for k, e in _others().items()}
    try:
        _score(name, EmbeddingSet.create(emb.image, emb.labels), bare)
    except MissingNeeds as exc:
        assert "needs" in str(exc), f"{name}: the error should say what it needs, got {exc}"
    else:
        raise AssertionError(f"{name}: scored an EmbeddingSet without the {estimator_class(name).needs} it needs")


def check_rejects_what_is_not_an_embedding_set(name: str) -> None:
    est = get_estimator(name)
    try:
        est.score_pool({"a": np.zeros((3, 3)), "b": np.zeros((3, 3))}) if est.pool_relative \
            else est.score(np.zeros((3, 3)))
    except InvalidInput:
        return
    raise AssertionError(f"{name}: accepted a bare array instead of an EmbeddingSet")


ALWAYS = (check_metadata, check_finite_and_deterministic, check_invariant_to_sample_order,
          check_invariant_to_relabelling_classes, check_does_not_mutate_inputs, check_degenerate_input,
          check_rejects_what_is_not_an_embedding_set)


def checks_for(name: str) -> list:
    """The checks that apply to the estimator registered as ``name`` (from what its class declares)."""
    cls = estimator_class(name)
    return [*ALWAYS,
            *([check_separable_classes_beat_noise] if cls.measures_separability else []),
            *([check_too_few_samples_per_class] if cls.min_per_class > 1 else []),
            *([check_missing_needs] if cls.needs else [])]


def check_estimator(name: str) -> None:
    """Run every applicable check on the estimator registered as ``name`` (or an Estimator class
    registered under its ``name``); the first broken rule raises AssertionError."""
    name = name if isinstance(name, str) else name.name
    for check in checks_for(name):
        try:
            check(name)
        except AssertionError:
            raise
        except Exception as exc:  # the estimator raised where the check expected a score
            raise AssertionError(f"{check.__name__}: {name} raised {type(exc).__name__}: {exc}") from exc


def parametrize_with_checks(names: list[str] | None = None):
    """A ``pytest.mark.parametrize("name, check", ...)`` over every (estimator, applicable check);
    ``names`` defaults to the whole registry, so an installed plugin is tested for free."""
    import pytest

    names = list_estimators() if names is None else list(names)
    cases = [(n, c) for n in names for c in checks_for(n)]
    return pytest.mark.parametrize("name, check", cases, ids=[f"{n}-{c.__name__[6:]}" for n, c in cases])
