"""Import torchvision safely next to a CPU-only torch build.

PyPI's torchvision wheels ship a compiled ``_C`` extension built against the CUDA
torch of the same release. Next to the CPU wheel of that torch the extension fails
to load, so the ``torchvision::nms`` / ``torchvision::qnms`` operators are never
defined, and ``import torchvision`` dies in its meta registrations with
"operator torchvision::nms does not exist". We need none of torchvision's compiled
ops (only datasets and transforms), so when the extension cannot load we define the
two operator schemas (without kernels) before the import. Where the extension
loads (a matching build, e.g. on a GPU machine) nothing is changed.

Every module of this project imports torchvision (and open_clip, which imports it)
through ``import_torchvision()``.
"""
from __future__ import annotations

import importlib.util
import os

_library = None  # keeps the torch.library registration alive


def _define_missing_ops() -> None:
    global _library
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    extension = os.path.join(os.path.dirname(spec.origin), "_C.so")
    try:
        torch.ops.load_library(extension)
        return
    except (OSError, RuntimeError):
        pass
    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")
        _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")


def import_torchvision():
    """``import torchvision``, defining the two missing operator schemas first if needed."""
    import sys

    if "torchvision" not in sys.modules:
        _define_missing_ops()
    import torchvision

    return torchvision


def import_open_clip():
    """``import open_clip`` (which imports torchvision) through the same guard."""
    import_torchvision()
    import open_clip

    return open_clip
