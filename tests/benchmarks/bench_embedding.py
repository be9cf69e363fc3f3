"""Embedding throughput of the offline encoders and warm-cache load time (pytest-benchmark).

    TRANSFERBENCH_DATA=../shared/data python -m pytest tests/benchmarks/bench_embedding.py

Throughput counts preprocessing + forward pass on CIFAR-10 test images at the encoders'
128 px, batch 8, channels_last, on this machine's threads.
"""
import numpy as np
import pytest

from encoders import get_encoder
from encoders.cache import ArrayCache
from encoders.extract import encode_images
from tasks import get_task

N_IMAGES = 96


@pytest.fixture(scope="module")
def images():
    return get_task("cifar10").load("test", n=N_IMAGES).images


@pytest.mark.parametrize("name", ["conse-lite0", "conse-lite1", "conse-lite2", "smoke"])
def test_embedding_throughput(benchmark, images, name):
    encoder = get_encoder(name)
    encode_images(encoder, images[:8], progress=False)  # warm-up
    benchmark.pedantic(lambda: encode_images(encoder, images, progress=False), rounds=3, iterations=1)
    benchmark.extra_info["images_per_second"] = N_IMAGES / benchmark.stats.stats.median


def test_warm_cache_load_10000x512(benchmark, tmp_path):
    rng = np.random.default_rng(0)
    cache = ArrayCache(tmp_path)
    spec = {"bench": "warm-load"}
    cache.put(spec, {"image": rng.normal(size=(10_000, 512)).astype(np.float32),
                     "labels": rng.integers(0, 100, 10_000), "text": rng.normal(size=(100, 512)).astype(np.float32)},
              {"note": "benchmark"})
    arrays, _ = benchmark(cache.get, spec)
    assert arrays["image"].shape == (10_000, 512)
