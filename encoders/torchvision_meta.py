"""Attributes of torchvision's ImageNet classifiers, read from their weight metadata (no download):
parameter count, ImageNet-1k top-1 accuracy and GFLOPs of the ``IMAGENET1K_V1`` weights, the
checkpoints of the LogME / SFDA "group 1" zoo. The ``models`` protocol ranks them as static baselines.

    python -m encoders.torchvision_meta resnet50 densenet121 > models.csv
"""
from __future__ import annotations

import sys

from estimators.errors import InvalidInput

COLUMNS = ("model", "params", "imagenet_top1", "gflops")


def attributes(names: list[str], weights: str = "IMAGENET1K_V1") -> list[dict]:
    """One row per torchvision model name (``COLUMNS``); InvalidInput for a name torchvision lacks."""
    from tasks.torchvision_compat import import_torchvision

    models = import_torchvision().models
    rows = []
    for name in names:
        try:
            meta = getattr(models.get_model_weights(name), weights).meta
        except (ValueError, AttributeError, KeyError) as err:
            raise InvalidInput(f"torchvision has no {weights} weights for {name!r}: {err}") from None
        rows.append({"model": name, "params": meta["num_params"],
                     "imagenet_top1": meta["_metrics"]["ImageNet-1K"]["acc@1"], "gflops": meta["_ops"]})
    return rows


def to_csv(rows: list[dict]) -> str:
    return "".join(",".join(str(r[c]) for c in COLUMNS) + "\n" for r in [dict(zip(COLUMNS, COLUMNS)), *rows])


if __name__ == "__main__":
    sys.stdout.write(to_csv(attributes(sys.argv[1:])))
