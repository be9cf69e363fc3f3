"""torchvision with any torch build (tasks.torchvision_compat), and commands without it.

Each case runs in a fresh interpreter: an operator registration or a failed import cannot
be undone inside one process. The newest torch/torchvision pair that an unpinned install
resolves is checked by ``.ci/unpinned`` (a second venv; multi-GB download, so not in CI).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCHVISION = '''
import sys
class _NoTorchvision:
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoTorchvision())
'''


def python(code_or_args, tmp_path: Path, block_torchvision: bool = False) -> subprocess.CompletedProcess:
    paths = [str(ROOT)]
    if block_torchvision:
        (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCHVISION)
        paths.insert(0, str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1"}
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_imports_torchvision_with_the_installed_torch(tmp_path):
    done = python("from tasks.torchvision_compat import import_open_clip, import_torchvision\n"
                  "tv = import_torchvision(); oc = import_open_clip()\n"
                  "from torchvision.transforms import v2\n"
                  "import torch; print(torch.__version__, tv.__version__, callable(oc.create_model))", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("True")


def test_operators_already_defined_are_not_defined_again(tmp_path):
    """torchvision 0.29 registers nms/qnms itself (``_C_stable.so``); defining them a second time
    aborts the process, so the shim may define them only when the real import says they are
    missing. Where the installed torchvision cannot register them (a CUDA torchvision next to a
    CPU torch), the test registers them first, as torchvision 0.29 would."""
    native = python("import torchvision", tmp_path).returncode == 0
    define = ("import torch\n"
              "lib = torch.library.Library('torchvision', 'DEF')\n"
              "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
              "lib.define('qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor')\n")
    done = python(("" if native else define) + "from tasks.torchvision_compat import import_torchvision\n"
                  "print(import_torchvision().__name__)", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "torchvision"


def test_a_half_imported_torchvision_is_imported_again(tmp_path):
    """A plain ``import torchvision`` that failed leaves submodules behind; the shim still works."""
    done = python("import sys\n"
                  "try:\n    import torchvision\nexcept RuntimeError:\n    pass\n"
                  "from tasks.torchvision_compat import import_torchvision\n"
                  "tv = import_torchvision(); print(tv.datasets.MNIST.__name__)", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "MNIST"


def test_commands_without_models_run_without_torchvision(tmp_path):
    from benchmark.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "e.npz", image_features=rng.normal(size=(60, 8)), labels=np.repeat(np.arange(3), 20),
             text_features=rng.normal(size=(3, 8)), logit_scale=100.0)
    results = tmp_path / "results"
    assert main(["run", "--suite", "smoke", "--tasks", "digits,mnist", "--methods", "clip_adapter", "--n-jobs", "1",
                 "--out", str(results), "--cache-dir", str(tmp_path / "cache")]) == 0
    for args in (["ls", "estimators"], ["score", "--embeddings", "e.npz", "--format", "json"],
                 ["leaderboard", "--results", "results", "--out", "board", "--n-boot", "50"]):
        done = python(["-m", "benchmark", *args], tmp_path, block_torchvision=True)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    assert (tmp_path / "board" / "leaderboard.md").is_file()


def test_commands_with_models_say_torchvision_is_missing_in_one_line(tmp_path):
    done = python(["-m", "benchmark", "embed", "--encoder", "smoke", "--task", "digits", "--n", "20",
                   "--cache-dir", "cache"], tmp_path, block_torchvision=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: torchvision is not installed; this command needs it: pip install torchvision (matching your torch)"]
