"""The contract every registered fine-tuning method meets, on the smoke encoder (a tiny open_clip
ViT) and sklearn's digits: a new method, built in or a plugin, is tested here for free.

For each method: its metadata and hyper-parameters resolve and check; it trains something; every
tensor it claims moves and stays finite while every other parameter stays bit-identical; the
same seed gives the same training, another seed another. For the built-in methods, what they
train is also written out independently from the parameter names (``method_checks``)."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from benchmark.finetune.loop import Examples, finetune, seed_everything
from benchmark.finetune.methods import get_method, list_methods
from benchmark.finetune.settings import GENERIC
from benchmark.finetune.tuned import trainable, trainable_counts
from benchmark.suites import get_suite
from encoders import get_encoder
from encoders.extract import encode_images
from estimators.embedding_set import l2_normalise
from tasks import get_task

from .method_checks import assert_only_claimed_moved, expected_trainable, tower_counts

METHODS = list_methods()
CONFIG = dataclasses.replace(get_suite("smoke").finetune, lr=1e-2, epochs=1, batch_size=10, max_steps=2)  # updates show
EMBED_DIM = 64  # the smoke encoder's


@functools.lru_cache(maxsize=1)
def digits() -> Examples:
    """50 digits training images (5 per class) with their smoke features."""
    sample = get_task("digits").load("train", n=50, seed=0)
    features = l2_normalise(encode_images(get_encoder("smoke"), sample.images, progress=False))
    return Examples(np.asarray(sample.labels), features, sample.images)


@functools.lru_cache(maxsize=None)
def trained(name: str, seed: int, run: int = 0):
    """(tuned model, parameters before, claimed tensors before, expected trainable or None, report)
    of one training of a fresh smoke encoder (``run`` tells repeated trainings apart)."""
    encoder = get_encoder("smoke")
    method = get_method(name)
    args = CONFIG.for_method(method).method_args
    expected = expected_trainable(encoder.model, name, EMBED_DIM, args.get("lora_rank", 4),
                                  args.get("adapter_reduction", 4), n_classes=10)
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    seed_everything(seed)
    tuned = method.prepare(encoder, CONFIG, get_task("digits"))
    claimed = {n: p.detach().clone() for n, p in trainable(tuned).items()}
    report = finetune(tuned, encoder, get_task("digits"), digits(), CONFIG, seed=seed, progress=False)
    return tuned, before, claimed, expected, report


@pytest.mark.parametrize("name", METHODS)
def test_metadata_and_hyperparameters_resolve(name):
    method = get_method(name)
    assert method.name == name and method.description and method.acts_on and isinstance(method.version, int)
    assert not set(method.hyperparameters) & set(GENERIC)
    others = {k for m in METHODS if m != name for k in get_method(m).hyperparameters}
    assert not set(method.hyperparameters) & others  # one flat namespace of settings
    resolved = CONFIG.for_method(method)
    assert resolved.method_args == dict(method.hyperparameters) and resolved.for_method(method) == resolved
    method.check(resolved.method_args)
    assert set(CONFIG.spec(method)) == set(GENERIC) | set(method.hyperparameters) | {"sweep"}


@pytest.mark.parametrize("name", METHODS)
def test_trains_what_it_claims_and_nothing_else(name):
    tuned, before, claimed, expected, report = trained(name, 0)
    counts = trainable_counts(tuned)
    assert sum(counts.values()) > 0 and report["steps"] > 0
    used = {n: v for n, v in claimed.items() if n not in report["unused"]}
    assert sum(counts.values()) == sum(v.numel() for v in used.values()) == sum(report["trainable"].values())
    if expected is not None:  # a built-in method: exactly the tensors written out by hand
        assert {n: tuple(v.shape) for n, v in claimed.items()} == expected
        assert report["trainable"] == tower_counts(expected) and report["unused"] == []
    assert_only_claimed_moved(tuned, before, used)


@pytest.mark.parametrize("name", METHODS)
def test_the_same_seed_trains_the_same_and_another_seed_otherwise(name):
    first, again, other = trained(name, 0), trained(name, 0, run=1), trained(name, 1)
    assert first[4]["history"] == again[4]["history"]
    params = [dict(trainable(t[0])) for t in (first, again, other)]
    assert all(torch.equal(params[0][n], params[1][n]) for n in params[0])
    assert other[4]["history"] != first[4]["history"]
    assert any(not torch.equal(params[0][n], params[2][n]) for n in params[0])
