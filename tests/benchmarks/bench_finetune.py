"""Fine-tuning throughput on conse-lite0 (pytest-benchmark; not part of the normal test run).

    TRANSFERBENCH_DATA=../shared/data python -m pytest tests/benchmarks/bench_finetune.py

* ``test_training_throughput[method]``: training images per second of each method with the
  ``mini`` settings (one random template per step), over ``STEPS`` steps of batch 32 on
  CIFAR-10; methods that leave the image tower frozen read cached embeddings.
* ``test_clip_adapter_cached_speedup``: the adapter trained on cached embeddings versus the
  same steps with the frozen image tower run on every batch (``extra_info["speedup"]``).
"""
import copy
import dataclasses
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.finetune.loop import (
    ClassPrompts,
    Examples,
    cached_image_batch,
    finetune,
    make_optimizer,
    seed_everything,
    zero_shot_logits,
)
from benchmark.finetune.methods import get_method, list_methods
from benchmark.finetune.tuned import backbone_trains, trainable
from benchmark.suites import get_suite
from encoders import get_encoder
from encoders.extract import embed, pixel_batches
from tasks import get_task

N_TRAIN, STEPS, BATCH = 200, 6, 32
MINI = get_suite("mini").finetune


@pytest.fixture(scope="module")
def lite0():
    return get_encoder("conse-lite0")


@pytest.fixture(scope="module")
def cifar10(lite0, tmp_path_factory):
    task = get_task("cifar10")
    emb = embed(lite0, task, "train", n=N_TRAIN, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return task, Examples(emb.labels, emb.image, task.load("train", n=N_TRAIN).images)


def _prepared(encoder, name: str):
    encoder = dataclasses.replace(encoder, model=copy.deepcopy(encoder.model))
    method = get_method(name)
    config = dataclasses.replace(MINI.for_method(method), max_steps=STEPS, batch_size=BATCH)
    seed_everything(0)
    return encoder, method.prepare(encoder, config), config


@pytest.mark.parametrize("name", list_methods())
def test_training_throughput(benchmark, lite0, cifar10, name):
    task, examples = cifar10

    def run():
        encoder, tuned, config = _prepared(lite0, name)
        return finetune(tuned, encoder, task, examples, config, progress=False)

    report = benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info.update(images_per_second=report["images_per_second"], image_path=report["image_path"])


def _adapter_steps(encoder, tuned, config, task, examples: Examples, cached: bool) -> float:
    """Seconds for ``STEPS`` adapter steps, image features from the cache or from the frozen tower."""
    rng = np.random.default_rng(0)
    prompts = ClassPrompts(tuned, encoder, task, config, rng, "cpu")
    optimizer = make_optimizer(list(trainable(tuned).values()), config)
    labels = torch.as_tensor(np.array(examples.labels))
    start = time.perf_counter()
    for _ in range(STEPS):
        idx = rng.choice(examples.labels.size, BATCH, replace=False)
        image = (cached_image_batch(tuned, examples, idx, "cpu") if cached
                 else tuned.encode_image(next(pixel_batches(encoder.preprocess, examples.images, [idx], "cpu"))))
        logits = zero_shot_logits(encoder, image, prompts())
        loss = F.cross_entropy(logits, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def test_clip_adapter_cached_speedup(benchmark, lite0, cifar10):
    task, examples = cifar10
    encoder, tuned, config = _prepared(lite0, "clip_adapter")
    assert not backbone_trains(tuned, "image")
    through_backbone = _adapter_steps(encoder, tuned, config, task, examples, cached=False)
    cached = benchmark.pedantic(_adapter_steps, args=(encoder, tuned, config, task, examples, True), rounds=3,
                                iterations=1)
    benchmark.extra_info.update(backbone_seconds=through_backbone, cached_seconds=cached,
                                speedup=through_backbone / cached)
