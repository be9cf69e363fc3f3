"""Model attributes that do not depend on the target task, ranked as static baselines by the
``models`` protocol: the parameter count of an encoder of this harness, and the parameter count,
ImageNet-1k top-1 accuracy and GFLOPs of a torchvision ImageNet classifier, read from its weight
metadata without a download (the checkpoints of the LogME / SFDA "group 1" zoo). CSV on stdout:

    python -m encoders.attributes conse-lite0 conse-lite1 > models.csv
    python -m encoders.attributes --torchvision resnet50 densenet121 > models.csv
"""
from __future__ import annotations

import argparse
import sys

from estimators.errors import InvalidInput

TORCHVISION_COLUMNS = ("model", "params", "imagenet_top1", "gflops")
ENCODER_COLUMNS = ("model", "params")


def torchvision_attributes(names: list[str], weights: str = "IMAGENET1K_V1") -> list[dict]:
    """One row per torchvision model name (``TORCHVISION_COLUMNS``); InvalidInput for a name it lacks."""
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


def encoder_attributes(ids: list[str]) -> list[dict]:
    """One row per encoder id (``ENCODER_COLUMNS``): the parameter count of the whole model."""
    from .base import get_encoder

    rows = []
    for name in ids:
        model = get_encoder(name).model
        rows.append({"model": name, "params": sum(p.numel() for p in model.parameters())})
    return rows


def to_csv(rows: list[dict], columns) -> str:
    return "".join(",".join(str(r[c]) for c in columns) + "\n" for r in [dict(zip(columns, columns)), *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoders.attributes", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="encoder ids, or torchvision model names with --torchvision")
    parser.add_argument("--torchvision", action="store_true", help="torchvision ImageNet classifiers' metadata")
    args = parser.parse_args(argv)
    try:
        if args.torchvision:
            sys.stdout.write(to_csv(torchvision_attributes(args.names), TORCHVISION_COLUMNS))
        else:
            sys.stdout.write(to_csv(encoder_attributes(args.names), ENCODER_COLUMNS))
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
