"""Outcomes: what fine-tuning does to one encoder on one target task (DESIGN.md, "Outcome").

``run_outcome`` measures one grid cell (encoder x method x target task x seed): zero-shot
accuracy from the cached embeddings, fine-tuning on the target's training sample (the one
the estimators score), then fine-tuned accuracy on the target's test sample and on every
other task of the suite (class-balanced ``n_ood`` subsets of their cached ``n_test``
samples, so no image is embedded twice). Accuracy is zero-shot style before and
after (argmax over class-prompt logits, IIMM ``test.py``). The deltas (``id_gain``,
``id_gain_norm``, ``ood_change``) are ``benchmark.evaluation.deltas``'.

A linear head (the ``linear`` method; every method on an image-only encoder) gives the
fine-tuned accuracy on the target; a dual encoder's other tasks are still classified by its
class prompts. An image-only encoder (``timm:``) has no zero-shot accuracy and no classifier for
the other tasks' classes: those accuracies are stored as null, so its cells carry the fine-tuned
target accuracy (``acc_ft``) and no delta (``id_gain``, ``ood_change``: None), and the delta
tables leave them out rather than invent a zero-shot baseline.

One JSON file per cell under ``OUT/outcomes/`` via ``benchmark.store.results``: named by the
cell, content-addressed by its spec (everything that changes the result), written
atomically, and skipped when it exists, so a killed run resumes cell by cell.

Cost of a ``mini`` cell (the ``finetune`` preset of ``benchmark/suites/mini.json``): mean wall
seconds over the 36 cells of each method in the published cold run (12 tasks, torch 2.13 CPU,
two cells side by side on 2 cores, one thread each; the ``seconds`` each cell records), and
where they go:

==============  =======  ========  ==========  ==============================================
method          seconds  training  evaluation  trains (ConSE encoders)
==============  =======  ========  ==========  ==============================================
full            41.6     78%       22%         image + text towers
bitfit          22.4     53%       42%         biases of both towers
attention       6.5      67%       27%         MiniLM Q/K/V (cached image embeddings)
lora            6.4      69%       27%         MiniLM Q/V low-rank (cached image embeddings)
clip_adapter    3.3      45%       51%         adapters on cached embeddings
==============  =======  ========  ==========  ==============================================

Evaluation runs a trained image tower with its BatchNorm folded (``encoders.fold``, 1.45x faster
inference) over the target's test sample and the kept out-of-domain images only; zero-shot
accuracy comes from the cached embeddings (under 1%). Timings vary by about 30%, and
several-fold when other processes compete for the cores.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.evaluation.deltas import deltas, same_dataset
from benchmark.finetune.loop import ENGINE_VERSION, Examples, accuracy, evaluation_view, finetune, seed_everything
from benchmark.finetune.methods import get_method
from benchmark.finetune.settings import FinetuneConfig
from benchmark.finetune.tuned import backbone_trains
from benchmark.store.results import cell_path, read_cell, write_cell
from estimators.zero_shot_acc import zero_shot_accuracy
from tasks import balanced_indices, get_task

KIND = "outcomes"


def outcome_spec(encoder_name: str, method, target: str, seed: int, others: list[str],
                 config: FinetuneConfig) -> dict:
    """Everything that changes a cell's result (its file name carries the sha256 of this); a user's
    image folders add the digests of their listings (``Task.data_digest``)."""
    tasks = {t: get_task(t) for t in sorted({target, *others})}
    digests = {t: task.data_digest for t, task in tasks.items() if task.data_digest}
    return {"kind": KIND, "encoder": encoder_name, "method": method.name, "method_version": method.version,
            "engine_version": ENGINE_VERSION, "target": target, "seed": seed, "eval_tasks": sorted(others),
            "task_versions": {t: task.version for t, task in tasks.items()},
            **({"task_data": digests} if digests else {}), "config": config.spec(method)}


def outcome_path(out, encoder_name: str, method_name: str, target: str, seed: int, eval_tasks,
                 config: FinetuneConfig) -> Path:
    """Where the cell's result file lives (whether or not it exists yet)."""
    method = get_method(method_name)
    return _cell(out, encoder_name, method, target, seed, eval_tasks, config.for_method(method))[2]


def _cell(out, encoder_name: str, method, target: str, seed: int, eval_tasks, cfg: FinetuneConfig):
    """(other tasks, spec, result path) of a cell; ``cfg`` is already resolved for ``method``."""
    others = [t for t in dict.fromkeys(eval_tasks) if t != target]
    spec = outcome_spec(encoder_name, method, target, seed, others, cfg)
    return others, spec, cell_path(Path(out), KIND, f"{encoder_name}__{method.name}__{target}__seed{seed}", spec)


def run_outcome(encoder_name: str, method_name: str, target_task: str, seed: int, eval_tasks,
                config: FinetuneConfig, out, data_root=None, cache_dir=None, device: str = "auto",
                progress: bool = True) -> dict:
    """Measure one cell, write its result file, return the stored record (an existing file is reused).

    Every task's test sample is the cached ``n_test`` one (shared with the scores stage); the
    other tasks are evaluated on a class-balanced ``n_ood`` subset of it."""
    from encoders.base import shared_encoder
    from encoders.extract import embed, pick_device

    method = get_method(method_name)
    cfg = config.for_method(method)
    others, spec, path = _cell(out, encoder_name, method, target_task, seed, eval_tasks, cfg)
    done = read_cell(path)
    if done is not None:
        return done

    clock = {"start": _now()}
    device = pick_device(device)
    encoder = shared_encoder(encoder_name)
    tasks = {t: get_task(t) for t in [target_task, *others]}
    clock["load"] = _now()
    kw = dict(seed=cfg.sample_seed, prompts=cfg.prompts, data_root=data_root, cache_dir=cache_dir, device=device,
              progress=progress)
    train = Sample(tasks[target_task], "train", cfg.n_train, embed(encoder, tasks[target_task], "train",
                                                                    n=cfg.n_train, **kw))
    tests = {t: Sample(task, "test", cfg.n_test, embed(encoder, task, "test", n=cfg.n_test, **kw),
                       None if t == target_task else cfg.n_ood) for t, task in tasks.items()}
    acc_zs = {t: None if s.emb.text is None else zero_shot_accuracy(s.emb.image[keep], s.emb.labels[keep], s.emb.text)
              for t, s in tests.items() for keep in [s.keep(cfg.sample_seed)]}  # image-only: none exists
    clock["zero_shot"] = _now()

    tuned, chosen, report, trials = _train_best(
        encoder, method, tasks[target_task], cfg, seed, device, progress,
        lambda with_images: train.examples(with_images, cfg.sample_seed, data_root))
    clock["train"] = _now()
    with_images = backbone_trains(tuned, "image")
    with evaluation_view(tuned):  # image-only: no classifier for the other tasks' classes, no accuracy there
        acc_ft = {t: accuracy(tuned, encoder, s.task, s.examples(with_images, cfg.sample_seed, data_root), cfg,
                              device, progress) if encoder.has_text or tuned.classifies(s.task) else None
                  for t, s in tests.items()}
    clock["evaluate"] = _now()
    result = {
        "encoder": encoder_name, "encoder_id": encoder.id, "weights_tag": encoder.weights_tag,
        "method": method.name, "target": target_task, "seed": seed, "eval_tasks": others,
        "acc_zs": acc_zs, "acc_ft": acc_ft,
        "n_test": {t: int(s.keep(cfg.sample_seed).size) for t, s in tests.items()},
        **deltas(acc_zs, acc_ft, target_task, same_dataset(target_task, others)),
        "trainable": report["trainable"], "unused_parameters": report["unused"],
        "hyperparameters": chosen.spec(method), "sweep": trials,
        "training": {k: v for k, v in report.items() if k not in ("trainable", "unused")},
        "seconds": _phases(clock), "threads": torch.get_num_threads(), "device": device,
        "versions": encoder.versions}
    write_cell(path, spec, result)
    return read_cell(path)


@dataclass(frozen=True)
class Sample:
    """A task's cached sample (``emb``: the EmbeddingSet of ``task.load(split, n=n)``), of
    which ``n_subset`` class-balanced items are used (None: all)."""

    task: object
    split: str
    n: int | None
    emb: object
    n_subset: int | None = None

    def keep(self, seed: int) -> np.ndarray:
        return balanced_indices(self.emb.labels, self.n_subset, seed)

    def examples(self, with_images: bool, seed: int, data_root=None) -> Examples:
        """The kept items as Examples: cached features, plus decoded images when the image tower trains."""
        keep = self.keep(seed)
        images = None
        if with_images:  # decodes only the kept images
            sample = self.task.load(self.split, data_root=data_root, n=self.n, seed=seed, subset=keep)
            if not np.array_equal(sample.labels, self.emb.labels[keep]):
                raise RuntimeError(f"cached embeddings of {self.task.id}/{self.split} do not match its sample; "
                                   f"clear the embedding cache")
            images = sample.images
        return Examples(self.emb.labels[keep], self.emb.image[keep], images)


def _phases(clock: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Wall and process-CPU seconds per phase from consecutive (wall, cpu) readings, and totals
    (CPU seconds / threads estimates the wall time on an otherwise idle machine)."""
    names = list(clock)
    out = {}
    for unit, i in (("wall", 0), ("cpu", 1)):
        spans = {b: round(clock[b][i] - clock[a][i], 3) for a, b in zip(names, names[1:])}
        out[unit] = {**spans, "total": round(clock[names[-1]][i] - clock[names[0]][i], 3)}
    return out


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _train_best(encoder, method, task, cfg: FinetuneConfig, seed: int, device: str, progress: bool, load):
    """Fine-tune a copy of ``encoder`` (left untouched) once per sweep point and keep the model
    with the best validation accuracy. ``load(with_images)`` gives the examples."""
    points = cfg.grid()
    best, trials, examples = None, [], None
    for point in points:
        trial = dataclasses.replace(encoder, model=copy.deepcopy(encoder.model))
        seed_everything(seed)
        tuned = method.prepare(trial, point, task)
        if examples is None:
            examples = load(backbone_trains(tuned, "image"))
        report = finetune(tuned, trial, task, examples, point, seed, device, progress)
        trials.append({"settings": {k: point.setting(k) for k in sorted(cfg.sweep)},
                       "best_val_acc": report["best_val_acc"]})
        if best is None or report["best_val_acc"] > best[2]["best_val_acc"]:
            best = (tuned, point, report)
    return (*best, trials)
