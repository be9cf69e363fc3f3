"""Embedding extraction: one task split through one encoder, cached on disk.

``embed(encoder, task, split)`` returns an EmbeddingSet (DESIGN.md contract). The
image features of each (encoder, task, split, subsample) are computed once, in
batches under ``torch.inference_mode`` on the chosen device (``autocast``: bf16 on
CUDA, where DataLoader workers and pinned memory feed the GPU), with a progress bar in
images/s, and stored in the content-addressed cache; a second call performs no forward pass.
Class-prompt text features are averaged over the task's templates (CLIP's prompt ensemble) or use the single canonical
template of the IIMM paper (``prompts="single"``).

An image-only encoder (``Encoder.has_text`` False, e.g. ``timm:``) has no text features: its
EmbeddingSet's ``text`` and ``logit_scale`` are None, and where its model has a source
classifier (``encode_image_and_logits``: an ImageNet head) the same forward pass gives the
``source_logits`` (N, K), stored in the cache beside the image features. Its cache spec has no
``templates`` (they change nothing) and says ``image_only``; a dual encoder's spec, and so its
cache key and bytes, are as before.
"""
from __future__ import annotations

import time

import numpy as np

from estimators import EmbeddingSet
from estimators.embedding_set import l2_normalise
from tasks import data_key

from .cache import ArrayCache

PROMPT_MODES = ("ensemble", "single")


def pick_device(requested: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; anything else is used as given."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _to(batch, device):
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)


def autocast(device: str):
    """The one mixed-precision rule (embedding, evaluation and training): bf16 autocast on a CUDA
    device that supports it, full precision everywhere else (fp16 would need loss scaling)."""
    import contextlib

    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_batch_size(device: str) -> int:
    """Images per forward pass when the caller gives none: 8 on CPU (the forward pass is the
    cost), 256 on an accelerator (a ViT-B/16 at 224 px under bf16 inference is far from filling
    a data-centre GPU at that size)."""
    return 8 if device == "cpu" else 256


class _Preprocessed:
    """A map-style dataset: ``preprocess(images[i])`` (for DataLoader workers)."""

    def __init__(self, images, preprocess):
        self.images, self.preprocess = images, preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.preprocess(self.images[int(i)])


def pixel_batches(preprocess, images, batches, device: str):
    """Yield the preprocessed pixels of ``images[b]`` for each index array ``b`` of ``batches``, on ``device``.

    On CUDA, DataLoader workers (one per spare core, at most 8) preprocess ahead of the GPU into
    pinned memory and the copies are non-blocking; elsewhere the batches are built in this process
    (channels_last on CPU, faster for convolutional towers)."""
    import os

    import torch

    if device.startswith("cuda"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        for pixels in worker_batches(preprocess, images, batches, min(8, max(cores - 1, 0)), pin_memory=True):
            yield pixels.to(device, non_blocking=True)
        return
    for b in batches:
        pixels = torch.stack([preprocess(images[int(i)]) for i in b])
        if device == "cpu":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        yield pixels.to(device)


def worker_batches(preprocess, images, batches, workers: int, pin_memory: bool):
    """A DataLoader yielding ``stack(preprocess(images[i]) for i in b)`` for each ``b``, built by ``workers``."""
    import torch

    return torch.utils.data.DataLoader(_Preprocessed(images, preprocess), batch_sampler=list(batches),
                                       num_workers=workers, pin_memory=pin_memory,
                                       generator=torch.Generator())  # leaves the global RNG alone


def templates_for(task, prompts: str) -> list[str]:
    if prompts not in PROMPT_MODES:
        raise ValueError(f"prompts must be one of {PROMPT_MODES}, got {prompts!r}")
    return list(task.templates) if prompts == "ensemble" else [task.template]


def encode_text(encoder, task, prompts: str = "ensemble", device: str = "cpu") -> np.ndarray:
    """(C, D) class-prompt embeddings: per class, the normalised mean of its normalised prompts."""
    import torch

    per_template = []
    with torch.inference_mode(), autocast(device):
        for index in range(len(templates_for(task, prompts))):
            tokens = _to(encoder.tokenize(task.prompts(index)), device)
            per_template.append(l2_normalise(encoder.model.encode_text(tokens).float().cpu().numpy()))
    return l2_normalise(np.mean(per_template, axis=0))


def has_source_logits(encoder) -> bool:
    """Whether the encoder's model has its own source classifier (an image-only model's ImageNet head)."""
    return hasattr(encoder.model, "encode_image_and_logits") and bool(getattr(encoder.model, "n_source_classes", 0))


def encode_images(encoder, images, batch_size: int | None = None, device: str = "cpu", progress: bool = True,
                  desc: str = "", source_logits: bool = False):
    """(N, D) float32 image embeddings (not yet normalised) in batches, with a progress bar.
    ``source_logits=True``: also the (N, K) float32 logits of the model's source classifier
    (``encode_image_and_logits``, same pass), returned as ``(embeddings, logits)``."""
    import torch
    from tqdm.auto import tqdm

    model = encoder.model.to(device).eval()
    size = batch_size or default_batch_size(device)
    batches = [np.arange(start, min(start + size, len(images))) for start in range(0, len(images), size)]
    out, logits = [], []
    with torch.inference_mode(), autocast(device), \
            tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for idx, pixels in zip(batches, pixel_batches(encoder.preprocess, images, batches, device)):
            if source_logits:
                features, head = model.encode_image_and_logits(pixels)
                logits.append(head.float().cpu().numpy())
            else:
                features = model.encode_image(pixels)
            out.append(features.float().cpu().numpy())
            bar.update(len(idx))
    image = np.concatenate(out).astype(np.float32)
    return (image, np.concatenate(logits).astype(np.float32)) if source_logits else image


def cache_spec(encoder, task, split: str, n: int | None, seed: int, prompts: str) -> dict:
    """Everything that changes the bytes of an entry (the cache key is its sha256). An image-only
    encoder's has no templates (it embeds no prompt) and says ``image_only`` instead."""
    spec = {"encoder": encoder.id, "weights": encoder.weights_tag, "preprocess": encoder.preprocess_cfg(),
            "task": task.id, "task_version": task.version, **data_key(task), "split": split, "n": n, "seed": seed,
            "templates": templates_for(task, prompts), "classnames": list(task.classnames)}
    if not getattr(encoder, "has_text", True):
        del spec["templates"]
        spec["image_only"] = True
    return spec


def embed(encoder, task, split: str = "train", n: int | None = None, seed: int = 0, prompts: str = "ensemble",
          data_root=None, cache_dir=None, device: str = "auto", batch_size: int | None = None,
          progress: bool = True, download: bool = False) -> EmbeddingSet:
    """The EmbeddingSet of ``task``'s ``split`` (class-balanced subsample of ``n``) under ``encoder``.

    ``download=True`` lets a task fetch its public original when no local copy exists."""
    cache = ArrayCache(cache_dir)
    spec = cache_spec(encoder, task, split, n, seed, prompts)
    hit = cache.get(spec)
    if hit is None:
        device = pick_device(device)
        data = task.load(split, data_root=data_root, n=n, seed=seed, download=download)
        start = time.perf_counter()
        with_text, with_logits = getattr(encoder, "has_text", True), has_source_logits(encoder)
        image = encode_images(encoder, data.images, batch_size, device, progress,
                              desc=f"{encoder.id} {task.id}/{split}", source_logits=with_logits)
        image, source_logits = image if with_logits else (image, None)
        seconds = time.perf_counter() - start
        meta = {"encoder": encoder.id, "task": task.id, "split": split, "n": len(data.labels), "seed": seed,
                "templates": spec.get("templates", []), "source": data.source, "device": device,
                "embed_seconds": round(seconds, 3), "versions": encoder.versions,
                "logit_scale": encoder.logit_scale, "logit_bias": encoder.logit_bias}
        arrays = {"image": image, "labels": np.asarray(data.labels, np.int64)}
        if with_text:
            arrays["text"] = encode_text(encoder, task, prompts, device)
        else:
            meta["image_only"] = True
        if source_logits is not None:
            arrays["source_logits"] = source_logits
        cache.put(spec, arrays, meta)
    else:
        arrays, meta = hit
    return EmbeddingSet.create(arrays["image"], arrays["labels"], text=arrays.get("text"),
                               logit_scale=meta["logit_scale"], logit_bias=meta["logit_bias"], meta=meta,
                               n_classes=len(task.classnames), source_logits=arrays.get("source_logits"))
