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

Linear head: where the TunedEncoder has a ``classifier`` for the task (the ``linear`` method;
every method on an image-only encoder), the logits are the head's over the (normalised) image
embedding, ``logits = W f + b``, instead of the class-prompt logits; the same cross-entropy,
validation and checkpointing apply, and no prompt is encoded.

Speed: when a method leaves the image backbone untouched (``clip_adapter``; ``attention``
and ``lora`` on ConSE, whose EfficientNet tower has no attention), training and
evaluation read the cached zero-shot image embeddings and only the text side runs.
Likewise a frozen text backbone is encoded once.

Parameters that never receive a gradient (e.g. MiniLM's unused pooler under ``full``)
are found at the first step, frozen, and reported as ``unused``.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import random
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.finetune.settings import FinetuneConfig
from benchmark.finetune.tuned import TunedEncoder, backbone_trains, trainable, trainable_counts
from encoders.extract import autocast, encode_images, pixel_batches, templates_for
from encoders.fold import folded_visual
from estimators.errors import InvalidInput
from tasks import balanced_indices

ENGINE_VERSION = 1


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
    """Zero-shot-style top-1 accuracy: argmax over the class-prompt logits (IIMM ``model_eval``), or
    over the linear head's logits on the task it was trained for (``TunedEncoder.classifies``).
    ``base_text``: the task's precomputed prompt ensemble when the text backbone is frozen. Callers
    wrap evaluation passes in ``evaluation_view``. An image-only encoder has no accuracy on a task
    without a head for its classes (InvalidInput)."""
    tuned.eval()
    cached = not backbone_trains(tuned, "image")
    _check_examples(examples, cached)
    head = tuned.classifies(task)
    if not head and not getattr(encoder, "has_text", True):
        raise InvalidInput(f"encoder {encoder.id} is image-only: it has no classifier for the classes of {task.id}")
    n_templates = len(templates_for(task, config.prompts))
    with autocast(device):
        if not head:
            tokens = None if base_text is not None else prompt_tokens(encoder, task, range(n_templates)).to(device)
            text = class_embeddings(tuned, tokens, n_templates, base_text).float()
        if cached:
            image = cached_image_batch(tuned, examples, np.arange(examples.labels.size), device).float()
        else:
            shim = SimpleNamespace(model=tuned, preprocess=encoder.preprocess)
            image = torch.from_numpy(encode_images(shim, examples.images, None, device, progress,
                                                   desc=f"evaluate {task.id}")).to(device)
    logits = tuned.classifier(image) if head else image @ text.T
    predicted = logits.argmax(dim=1).cpu().numpy()
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
    head = tuned.classifies(task)
    if not head and not getattr(encoder, "has_text", True):
        raise InvalidInput(f"encoder {encoder.id} is image-only: fine-tuning it needs a linear head for {task.id} "
                           f"(Method.prepare(encoder, config, task))")
    prompts = None if head else ClassPrompts(tuned, encoder, task, config, rng, device)
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
                    text = None if head else prompts().float()
                logits = tuned.classifier(image) if head else zero_shot_logits(encoder, image, text)
                loss = F.cross_entropy(logits, labels[idx])
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
                                   base_text=None if head else prompts.base)
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
