"""Suites: which encoders, tasks and sample sizes a run covers (DESIGN.md, "Suites")."""
from __future__ import annotations

from dataclasses import dataclass

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
    tasks=("cifar10", "cifar10_animals", "cifar10_vehicles", "digits", "flowers", "gtsrb", "imagenette",
           "imagewoof", "intelscenes", "mnist", "notmnist", "pneumoniamnist"),
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
