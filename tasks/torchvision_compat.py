"""Import torchvision with any torch build, deciding by the real import.

PyPI's torchvision wheels carry compiled operators built against the CUDA torch of the
same release. Next to a CPU-only torch (e.g. ``torch==2.13.0`` + ``torchvision==0.28.0``)
they fail to load, the ``torchvision::nms`` / ``torchvision::qnms`` operators are never
defined, and ``import torchvision`` dies in its fake-tensor registrations with
"operator torchvision::nms does not exist". Other pairs (torchvision 0.29 with its
``_C_stable.so``, a matching CUDA build) define the operators themselves, and defining
them first would abort the process ("registered ... multiple times").

So ``import_torchvision`` first imports torchvision as it is. Only when that import fails
for exactly that reason does it forget the half-imported modules, define the two schemas
(without kernels: this project needs torchvision's datasets and transforms, not its ops)
and import again. Every module of this project imports torchvision (and open_clip, timm,
transformers, which import it) through this module; the commands that need no model
(``score``, ``ls estimators``, ``leaderboard``) never import it.
"""
from __future__ import annotations

import re
import sys

from estimators.errors import InvalidInput

_MISSING_OP = re.compile(r"operator torchvision::q?nms does not exist")
_library = None  # keeps the torch.library schema definitions alive


class MissingDependency(InvalidInput):
    """A package this command needs is not installed (one line, exit status 2)."""


def import_torchvision():
    """``import torchvision``; define its two detection-op schemas only if the import needs them."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    try:
        import torchvision
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
        raise MissingDependency("torchvision is not installed; this command needs it: "
                                "pip install torchvision (matching your torch)") from None
    except RuntimeError as exc:
        if not _MISSING_OP.search(str(exc)):
            raise
        _forget_partial_import()
        _define_op_schemas()
        import torchvision
    return torchvision


def import_open_clip():
    """``import open_clip`` (which imports torchvision) after the torchvision import above."""
    import_torchvision()
    try:
        import open_clip
    except ModuleNotFoundError as exc:
        if exc.name != "open_clip":
            raise
        raise MissingDependency("open_clip is not installed; this command needs it: pip install open_clip_torch") \
            from None
    return open_clip


def _forget_partial_import() -> None:
    """Drop the torchvision modules a failed import left in ``sys.modules``."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_op_schemas() -> None:
    global _library
    import torch

    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")
        _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
