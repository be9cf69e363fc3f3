"""Estimator speed at N=10,000, D=512, C=100 (pytest-benchmark; not part of the test run).

    python -m pytest tests/benchmarks/bench_estimators.py

Targets on a 2-core CPU: IIMM <= 50 ms; every estimator except NLEEP <= 5 s;
NLEEP <= 30 s; the whole suite (every estimator once) <= 40 s.
"""
import numpy as np
import pytest

from benchmark.scoring import score_all
from estimators import EmbeddingSet, estimator_class, get_estimator, list_estimators

N, D, C = 10_000, 512, 100
SLOW = {"nleep"}


def embeddings(seed: int) -> EmbeddingSet:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(C, D))
    labels = np.repeat(np.arange(C), N // C)
    image = centres[labels] + 3.0 * rng.normal(size=(N, D))
    text = centres + rng.normal(size=(C, D))
    return EmbeddingSet.create(image, labels, text=text, logit_scale=100.0,
                               meta={"encoder": f"bench{seed}", "task": "bench", "split": "train"})


@pytest.fixture(scope="module")
def pool():
    return {f"encoder{i}": embeddings(i) for i in range(3)}


@pytest.mark.parametrize("name", list_estimators())
def test_estimator_speed(benchmark, pool, name):
    est = get_estimator(name)
    emb = pool["encoder0"]
    run = (lambda: est.score_pool(pool)) if est.pool_relative else (lambda: est.score(emb))
    rounds = 1 if name in SLOW else 3
    benchmark.extra_info["pool_size"] = len(pool) if est.pool_relative else 1
    result = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    assert result is not None
    limit = 30.0 if name in SLOW else (0.05 if name == "iimm" else 5.0)
    if estimator_class(name).pool_relative:
        limit *= len(pool)
    assert benchmark.stats.stats.median <= limit, f"{name} took {benchmark.stats.stats.median:.2f} s"


def test_whole_suite(benchmark, pool):
    names = list_estimators()
    emb = {"encoder0": pool["encoder0"]}
    benchmark.pedantic(lambda: score_all(emb, names), rounds=1, iterations=1)
    assert benchmark.stats.stats.median <= 40.0
