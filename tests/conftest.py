"""Shared test settings (offline data, no hub access) and small synthetic EmbeddingSets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from estimators import EmbeddingSet

# The offline datasets live in ../shared/data beside the clone (CI has them there); tests read
# them unless the caller points TRANSFERBENCH_DATA elsewhere. No test may reach a model hub.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("TRANSFERBENCH_DATA", str(SHARED_DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run only when the marker expression asks for them (``-m slow``)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt in with `-m slow`")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _task_registry_per_module():
    """Tasks a test module registers (a user's task file run in-process) leave with the module."""
    from tasks import TASKS

    with TASKS.scoped():
        yield


def make_embeddings(kind: str, n_per_class: int = 20, n_classes: int = 4, dim: int = 16,
                    seed: int = 0, **meta) -> EmbeddingSet:
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


@pytest.fixture(scope="session")
def separable():
    return make_embeddings("separable")


@pytest.fixture(scope="session")
def noise():
    return make_embeddings("noise")


@pytest.fixture(scope="session")
def pool():
    return {kind: make_embeddings(kind) for kind in ("separable", "overlapping", "noise")}


@pytest.fixture(scope="session")
def iris():
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.astype(np.float32), data.target.astype(np.int64)
