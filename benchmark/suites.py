"""Suites: which encoders, tasks and sample sizes a run covers (DESIGN.md, "Suites").

An encoder entry is any encoder id ``get_encoder`` accepts: a registered name, or an
``open_clip:`` spec with local weights (``open_clip:ViT-B-32-quickgelu//ckpts/vitb32.pt``,
``open_clip:local-dir:/ckpts/ViT-B-16-SigLIP``). ``get_suite`` also reads a suite from a
JSON file holding the ``Suite`` fields.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from estimators.errors import InvalidInput
from estimators.registry import Registry


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    encoders: tuple[str, ...]
    tasks: tuple[str, ...]
    n_train: int | None      # class-balanced training images scored by the estimators (None: all)
    n_test: int | None       # test images for accuracy (None: all)
    prompts: str             # "ensemble" (all of a task's templates) or "single" (the canonical one)
    seeds: tuple[int, ...] = (0,)


SUITES = Registry("suite")

MINI = Suite(
    "mini", "offline, 2-core CPU: real ImageNet EfficientNet-Lite towers + MiniLM text tower (ConSE) "
    "on the offline datasets of ../shared/data and sklearn's digits",
    encoders=("conse-lite0", "conse-lite1", "conse-lite2"),
    tasks=("cifar10", "cifar10_animals", "cifar10_vehicles", "digits", "flowers", "gtsrb", "mnist",
           "notmnist", "pneumoniamnist"),
    n_train=500, n_test=500, prompts="ensemble")
PAPER = Suite(
    "paper", "the IIMM paper's setup (GPU + internet): four open_clip encoders on ten torchvision datasets",
    encoders=("vitb32-openai", "vitb16-siglip-webli", "coca-vitb32-laion2b", "eva02-b16-merged2b"),
    tasks=("cars", "cifar100", "dtd", "eurosat", "gtsrb_paper", "mnist_paper", "resisc45", "stl10", "sun397",
           "svhn"),
    n_train=5000, n_test=None, prompts="single")
SMOKE = Suite(
    "smoke", "seconds: a tiny random-init open_clip encoder on tiny samples, for tests",
    encoders=("smoke",), tasks=("digits", "mnist", "notmnist"), n_train=100, n_test=100, prompts="single")

for _suite in (MINI, PAPER, SMOKE):
    SUITES.register(_suite.name)(_suite)


def get_suite(name_or_path: str) -> Suite:
    """The registered suite ``name_or_path``, or the suite of a ``.json`` file (the ``Suite``
    fields; ``description`` may be left out, lists for tuples)."""
    if not name_or_path.endswith(".json"):
        return SUITES.get(name_or_path)
    path = Path(name_or_path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"suite file {path}: cannot read it as JSON ({exc})") from None
    fields = {f.name for f in dataclasses.fields(Suite)}
    required = {f.name for f in dataclasses.fields(Suite) if f.default is dataclasses.MISSING} - {"description"}
    if not isinstance(spec, dict) or set(spec) - fields or required - set(spec):
        found = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise InvalidInput(f"suite file {path}: needs the fields {sorted(required)} (optional: description, "
                           f"seeds), found {found}")
    names_ok = all(isinstance(spec[k], list) and spec[k] and all(isinstance(x, str) for x in spec[k])
                   for k in ("encoders", "tasks"))
    if not names_ok or spec["prompts"] not in ("ensemble", "single"):
        raise InvalidInput(f"suite file {path}: encoders and tasks must be non-empty lists of names, "
                           f"prompts 'ensemble' or 'single'")
    spec = {"description": f"from {path}", **spec}
    return Suite(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
