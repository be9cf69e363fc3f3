"""The fine-tuning loop: cross-entropy over zero-shot prompt logits, as the IIMM paper.

Objective (arXiv 2407.15731; code github.com/mit-ll/IIMM ``train.py``, ``train_helpers.py``):
``logits = logit_scale * cos(image, class prompt) (+ logit_bias)``, cross-entropy against
the labels. The class embeddings go through the (possibly trained) text tower at every
step: per class the normalised mean of its normalised prompts over the task's templates
(``prompts="ensemble"``) or its canonical template (``"single"``, the paper's), then the
method's text head. A class-balanced validation split (10%, at most 5000, seeded) is
carved from the training sample; after every epoch the validation accuracy is measured
and the best checkpoint (the trainable tensors only) is kept in memory and restored at
the end; the step-0 model is not a candidate (as IIMM). Batches are near-equal splits of
a seeded permutation; SGD (momentum 0.9) or AdamW, constant learning rate, no
augmentation. Mixed precision: ``encoders.extract.autocast`` (bf16 on CUDA).

Speed: when a method leaves the image backbone untouched (``clip_adapter``; ``attention``
and ``lora`` on ConSE, whose EfficientNet tower has no attention), training and
evaluation read the cached zero-shot image embeddings and only the text side runs.
Likewise a frozen text backbone is encoded once.

Parameters that never receive a gradient (e.g. MiniLM's unused pooler under ``full``)
are found at the first step, frozen, and reported as ``unused``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from encoders.extract import PROMPT_MODES, autocast, encode_images, pixel_batches, templates_for
from encoders.fold import folded_visual
from estimators.errors import InvalidInput
from estimators.registry import UnknownName, did_you_mean
from tasks import balanced_indices

from .methods import TunedEncoder, backbone_trains, trainable, trainable_counts

ENGINE_VERSION = 1
OPTIMIZERS = ("adamw", "sgd")
METHOD_FIELDS = ("lora_rank", "lora_scale", "adapter_reduction", "adapter_ratio")


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of one fine-tuning run; ``overrides`` and ``sweep`` adapt it per method.

    ``overrides[method]`` replaces fields for that method only (PEFT methods want other
    learning rates than full fine-tuning); ``sweep`` maps fields to values searched by
    validation accuracy (the paper's grid). ``n_test``: test images of every task (None: the
    whole split); ``n_ood``: the class-balanced part of them used for the tasks other than
    the target (None or more than ``n_test``: all); ``sample_seed`` draws those
    samples and the training sample (the estimators' ``seeds[0]``, so caches are shared).
    """

    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    momentum: float = 0.9
    epochs: int = 2
    max_steps: int | None = None
    batch_size: int = 32
    val_fraction: float = 0.1
    max_val: int = 5000
    prompts: str = "ensemble"
    templates_per_step: int | None = None
    n_train: int | None = 500
    n_test: int | None = 500
    n_ood: int | None = 200
    sample_seed: int = 0
    lora_rank: int = 4
    lora_scale: float = 0.2
    adapter_reduction: int = 4
    adapter_ratio: float = 0.2
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sweep: Mapping[str, Sequence] = field(default_factory=dict)

    def __post_init__(self):
        checks = [(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
                  (self.prompts in PROMPT_MODES, f"prompts must be one of {PROMPT_MODES}"),
                  (self.lr > 0 and self.weight_decay >= 0, "lr must be > 0 and weight_decay >= 0"),
                  (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1"),
                  (self.max_steps is None or self.max_steps >= 1, "max_steps must be None or >= 1"),
                  (self.templates_per_step is None or self.templates_per_step >= 1,
                   "templates_per_step must be None or >= 1"),
                  (0 < self.val_fraction < 1 and self.max_val >= 1, "val_fraction must lie in (0, 1)"),
                  (self.lora_rank >= 1 and self.adapter_reduction >= 1, "lora_rank, adapter_reduction must be >= 1"),
                  (0 <= self.adapter_ratio <= 1, "adapter_ratio must lie in [0, 1]")]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(f"fine-tuning config: {message}")
        keys = {k for fields in self.overrides.values() for k in fields} | set(self.sweep)
        unknown = keys - set(_SETTINGS)
        if unknown:
            raise InvalidInput(f"fine-tuning config: unknown field(s) {sorted(unknown)} in overrides/sweep")
        if any(len(values) == 0 for values in self.sweep.values()):
            raise InvalidInput("fine-tuning config: every sweep field needs at least one value")

    def for_method(self, method) -> "FinetuneConfig":
        """The settings ``method`` runs with: its overrides applied, the sweep cut to what it reads."""
        resolved = dataclasses.replace(self, **dict(self.overrides.get(method.name, {})), overrides={})
        keep = relevant_fields(method)
        return dataclasses.replace(resolved, sweep={k: tuple(v) for k, v in resolved.sweep.items() if k in keep})

    def grid(self) -> list["FinetuneConfig"]:
        """One config per point of the sweep (itself when there is no sweep)."""
        names = sorted(self.sweep)
        return [dataclasses.replace(self, sweep={}, **dict(zip(names, values)))
                for values in itertools.product(*(self.sweep[n] for n in names))]

    def spec(self, method) -> dict:
        """JSON-able settings that change ``method``'s results (for content-addressed specs)."""
        out = {k: getattr(self, k) for k in relevant_fields(method)}
        out["sweep"] = {k: list(v) for k, v in sorted(self.sweep.items())}
        return out


_SETTINGS = tuple(f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in ("overrides", "sweep"))


def relevant_fields(method) -> tuple[str, ...]:
    """The generic settings plus the method's own hyper-parameters."""
    return tuple(k for k in _SETTINGS if k not in METHOD_FIELDS or k in method.hyperparameters)


#: ``mini``: 2-core CPU, offline ConSE encoders; sized so the 3 x 9 x 5 grid fits in the
#: 45-minute budget of a cold run on 2 cores (measured costs in benchmark.outcomes' docs). Full
#: fine-tuning: AdamW lr 1e-4, wd 0.01, 2 epochs of the 500-image sample in batches of 32,
#: BatchNorm frozen (shared/research/feasibility.md s3: the cheapest recipe that moves ConSE
#: accuracy; 3e-4 was unstable). The PEFT methods barely move at 1e-4 (LoRA not at all), so
#: each has the rate that did best on CIFAR-10 / notMNIST validation accuracy of conse-lite0
#: (the paper grid-searches it too). BitFit runs one epoch in batches of 16 (same number of
#: updates, half the image cost). The text-only methods (ConSE's image tower has no
#: attention) read cached image embeddings and get 3 epochs; the adapter 50 epochs at 1e-3
#: (feasibility.md). One random template per step keeps a trained text tower affordable
#: (GTSRB: 43 x 5 prompts); evaluation always uses the whole ensemble.
MINI = FinetuneConfig(optimizer="adamw", lr=1e-4, weight_decay=0.01, epochs=2, batch_size=32, prompts="ensemble",
                      templates_per_step=1, n_train=500, n_test=500, n_ood=50,
                      overrides={"bitfit": {"lr": 1e-3, "epochs": 1, "batch_size": 16},
                                 "attention": {"lr": 3e-4, "epochs": 3}, "lora": {"lr": 1e-2, "epochs": 3},
                                 "clip_adapter": {"lr": 1e-3, "epochs": 50}})
#: ``paper``: IIMM's protocol (paper.md s2.3): SGD momentum 0.9, batch 128, 30 epochs, the
#: canonical template, whole splits, and its grid searched by validation accuracy.
PAPER = FinetuneConfig(optimizer="sgd", lr=1e-5, weight_decay=1e-4, epochs=30, batch_size=128, prompts="single",
                       n_train=None, n_test=None, n_ood=None,
                       sweep={"lr": (1e-2, 1e-3, 1e-4, 1e-5), "weight_decay": (1e-3, 1e-4, 1e-5),
                              "lora_rank": (2, 4, 8, 16), "adapter_reduction": (4, 8, 16, 32)})
#: ``smoke``: seconds, for tests.
SMOKE = FinetuneConfig(lr=1e-3, epochs=2, batch_size=16, prompts="single", n_train=100, n_test=100, n_ood=50)
PRESETS = {"mini": MINI, "paper": PAPER, "smoke": SMOKE}


def finetune_preset(name: str) -> FinetuneConfig:
    """The fine-tuning settings of suite ``name`` (``mini``, ``paper``, ``smoke``)."""
    if name not in PRESETS:
        raise UnknownName(did_you_mean("fine-tuning preset", name, PRESETS))
    return PRESETS[name]


@dataclass(frozen=True)
class Examples:
    """Labelled examples of one task split: cached L2-normalised zero-shot image embeddings
    ``features`` (N, D) and/or PIL ``images`` (needed when the image backbone trains)."""

    labels: np.ndarray
    features: np.ndarray | None = None
    images: Sequence | None = None

    def take(self, idx: np.ndarray) -> "Examples":
        return Examples(self.labels[idx], None if self.features is None else self.features[idx],
                        None if self.images is None else [self.images[i] for i in idx])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validation_split(labels: np.ndarray, config: FinetuneConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions: a class-balanced ``val_fraction`` (at most ``max_val``) drawn with ``seed``."""
    n_val = min(round(config.val_fraction * labels.size), config.max_val)
    val = balanced_indices(labels, n_val, seed)
    train = np.setdiff1d(np.arange(labels.size), val)
    if val.size == 0 or train.size == 0:
        raise InvalidInput(f"{labels.size} training examples are too few to carve a {config.val_fraction:.0%} "
                           f"validation split")
    return train, val


def prompt_tokens(encoder, task, templates) -> torch.Tensor:
    """Tokens of every (template, class) prompt for the template indices ``templates``, template-major."""
    return encoder.tokenize([p for i in templates for p in task.prompts(i)])


def prompt_ensemble(prompt_embeddings: torch.Tensor, n_templates: int) -> torch.Tensor:
    """(T*C, D) template-major unit rows -> (C, D): per class the normalised mean (CLIP's ensemble)."""
    return F.normalize(prompt_embeddings.view(n_templates, -1, prompt_embeddings.shape[-1]).mean(0), dim=-1)


def class_embeddings(tuned: TunedEncoder, tokens: torch.Tensor, n_templates: int,
                     base: torch.Tensor | None = None) -> torch.Tensor:
    """(C, D) class embeddings; ``base`` is the precomputed ensemble of a frozen text backbone."""
    if base is None:
        base = prompt_ensemble(tuned.encode_prompts(tokens), n_templates)
    return tuned.text_head(base)


def zero_shot_logits(encoder, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    logits = encoder.logit_scale * image @ text.T
    return logits if encoder.logit_bias is None else logits + encoder.logit_bias


def cached_image_batch(tuned: TunedEncoder, examples: Examples, idx: np.ndarray, device: str) -> torch.Tensor:
    """The image head over the cached zero-shot embeddings of ``examples[idx]``."""
    return tuned.image_head(torch.from_numpy(examples.features[idx]).to(device))


@torch.no_grad()
def accuracy(tuned: TunedEncoder, encoder, task, examples: Examples, config: FinetuneConfig,
             device: str = "cpu", progress: bool = False, base_text: torch.Tensor | None = None) -> float:
    """Zero-shot-style top-1 accuracy: argmax over the class-prompt logits (IIMM ``model_eval``).
    ``base_text``: the task's precomputed prompt ensemble when the text backbone is frozen. Callers
    wrap evaluation passes in ``evaluation_view``."""
    tuned.eval()
    cached = not backbone_trains(tuned, "image")
    _check_examples(examples, cached)
    n_templates = len(templates_for(task, config.prompts))
    with autocast(device):
        tokens = None if base_text is not None else prompt_tokens(encoder, task, range(n_templates)).to(device)
        text = class_embeddings(tuned, tokens, n_templates, base_text).float()
        if cached:
            image = cached_image_batch(tuned, examples, np.arange(examples.labels.size), device).float()
        else:
            shim = SimpleNamespace(model=tuned, preprocess=encoder.preprocess)
            image = torch.from_numpy(encode_images(shim, examples.images, None, device, progress,
                                                   desc=f"evaluate {task.id}")).to(device)
    predicted = (image @ text.T).argmax(dim=1).cpu().numpy()
    return float(np.mean(predicted == examples.labels))


def evaluation_view(tuned: TunedEncoder):
    """Context for evaluation passes: a trained image tower runs as a copy with its BatchNorm folded
    into the convolutions (``encoders.fold``: same function, ~1.45x faster on CPU); the model is
    restored on exit. Fold once per evaluation, not per task (a fold costs ~50 ms)."""
    return folded_visual(tuned.model) if backbone_trains(tuned, "image") else contextlib.nullcontext()


def _check_examples(examples: Examples, cached: bool) -> None:
    if cached and examples.features is None:
        raise InvalidInput("the image backbone is frozen: examples need cached image features")
    if not cached and examples.images is None:
        raise InvalidInput("the image backbone trains: examples need their images")


def make_optimizer(params, config: FinetuneConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def drop_unused(tuned: TunedEncoder) -> list[str]:
    """Freeze and name the trainable parameters that got no gradient (not in the loss's graph)."""
    unused = [name for name, p in trainable(tuned).items() if p.grad is None]
    for name in unused:
        tuned.get_parameter(name).requires_grad_(False)
    return unused


def snapshot(tuned: TunedEncoder) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainable(tuned).items()}


@torch.no_grad()
def restore(tuned: TunedEncoder, state: dict[str, torch.Tensor]) -> None:
    for name, value in state.items():
        tuned.get_parameter(name).copy_(value)


class ClassPrompts:
    """The class embeddings of a training step: the ensemble over all templates, or over
    ``templates_per_step`` templates drawn at random each step (seeded) to cut the cost of a
    trained text tower. A frozen text backbone is encoded once (over all templates)."""

    def __init__(self, tuned: TunedEncoder, encoder, task, config: FinetuneConfig, rng: np.random.Generator,
                 device: str):
        self.tuned, self.encoder, self.task, self.rng, self.device = tuned, encoder, task, rng, device
        self.n_templates = len(templates_for(task, config.prompts))
        self.per_step = min(config.templates_per_step or self.n_templates, self.n_templates)
        self._tokens: dict[tuple[int, ...], torch.Tensor] = {}
        self.base = None
        if not backbone_trains(tuned, "text"):
            with torch.no_grad(), autocast(device):
                tuned.eval()
                all_templates = tuple(range(self.n_templates))
                self.base = prompt_ensemble(tuned.encode_prompts(self.tokens(all_templates)), self.n_templates).float()

    def tokens(self, templates: tuple[int, ...]) -> torch.Tensor:
        if templates not in self._tokens:
            self._tokens[templates] = prompt_tokens(self.encoder, self.task, templates).to(self.device)
        return self._tokens[templates]

    def __call__(self) -> torch.Tensor:
        if self.base is not None:
            return self.tuned.text_head(self.base)
        chosen = range(self.n_templates)
        if self.per_step < self.n_templates:
            chosen = sorted(self.rng.choice(self.n_templates, self.per_step, replace=False).tolist())
        return class_embeddings(self.tuned, self.tokens(tuple(chosen)), len(chosen))


def finetune(tuned: TunedEncoder, encoder, task, examples: Examples, config: FinetuneConfig, seed: int = 0,
             device: str = "cpu", progress: bool = True) -> dict:
    """Train ``tuned`` on ``examples`` of ``task`` in place; leave it at its best validation
    checkpoint and return the training report (history, steps, throughput, trained counts)."""
    from tqdm.auto import tqdm

    seed_everything(seed)
    tuned.to(device)
    cached = not backbone_trains(tuned, "image")
    _check_examples(examples, cached)
    train_idx, val_idx = validation_split(examples.labels, config, seed)
    rng = np.random.default_rng(seed)
    prompts = ClassPrompts(tuned, encoder, task, config, rng, device)
    labels = torch.as_tensor(np.array(examples.labels, dtype=np.int64)).to(device)
    optimizer = make_optimizer(list(trainable(tuned).values()), config)
    n_batches = math.ceil(train_idx.size / config.batch_size)
    total = min(config.epochs * n_batches, config.max_steps or math.inf)
    step, seen, train_seconds, unused, history = 0, 0, 0.0, [], []
    best_acc, best_state, best_epoch = -1.0, None, 0
    with tqdm(total=total, desc=f"fine-tune {task.id}", unit="step", disable=not progress, leave=False) as bar:
        for epoch in range(1, config.epochs + 1):
            tuned.train()
            start, losses = time.perf_counter(), []
            batches = np.array_split(rng.permutation(train_idx), n_batches)
            pixels = itertools.repeat(None) if cached else pixel_batches(encoder.preprocess, examples.images,
                                                                         batches, device)
            for idx, batch_pixels in zip(batches, pixels):
                with autocast(device):
                    image = (cached_image_batch(tuned, examples, idx, device) if cached
                             else tuned.encode_image(batch_pixels)).float()
                    text = prompts().float()
                loss = F.cross_entropy(zero_shot_logits(encoder, image, text), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if step == 0:
                    unused = drop_unused(tuned)
                optimizer.step()
                step, seen = step + 1, seen + idx.size
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if step >= total:
                    break
            train_seconds += time.perf_counter() - start
            with evaluation_view(tuned):
                val_acc = accuracy(tuned, encoder, task, examples.take(val_idx), config, device,
                                   base_text=prompts.base)
            history.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "val_acc": val_acc})
            if val_acc > best_acc:
                best_acc, best_state, best_epoch = val_acc, snapshot(tuned), epoch
            if step >= total:
                break
    restore(tuned, best_state)
    tuned.eval()
    return {"steps": step, "epochs": len(history), "history": history, "best_epoch": best_epoch,
            "best_val_acc": best_acc, "image_path": "cached" if cached else "backbone",
            "trainable": trainable_counts(tuned), "unused": unused, "n_train": int(train_idx.size),
            "n_val": int(val_idx.size), "train_seconds": round(train_seconds, 3),
            "images_per_second": round(seen / train_seconds, 1) if train_seconds else None}
