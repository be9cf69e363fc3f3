"""Shared test settings (offline data, no hub access) and small synthetic EmbeddingSets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from estimators.checks import synthetic

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


make_embeddings = synthetic  # the contract's synthetic EmbeddingSets (estimators.checks)


def eval_tasks() -> list[str]:
    """The target and one other task for an outcome cell: ``digits`` and ``mnist`` (the target alone
    where the offline mnist copy is absent)."""
    from tasks import get_task

    try:
        get_task("mnist").load("test", data_root=os.environ.get("TRANSFERBENCH_DATA"), n=10)
    except Exception:  # offline data absent: the target alone
        return ["digits"]
    return ["digits", "mnist"]


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network and empty caches (HF hub, torch hub, a ported tower's), also for an already imported
    huggingface_hub."""
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "transferbench"))


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
