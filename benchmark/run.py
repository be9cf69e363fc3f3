"""``python -m benchmark run``: embed every (encoder, task) of a suite, measure zero-shot
accuracy, and score every estimator on the zero-shot training embeddings.

Each (encoder, task) is one result file under ``OUT/scores/`` and each task's
pool-relative scores (NCTI) one file under ``OUT/pool_scores/``; a rerun skips the
cells whose files exist, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimators import ESTIMATORS, InvalidInput, estimator_class

from .results import cell_path, read_all, read_cell, write_cell
from .scoring import score_all
from .suites import Suite


@dataclass(frozen=True)
class Cell:
    encoder: str
    task: str


def plan(suite: Suite, encoders: str = "*", tasks: str = "*", limit: int | None = None) -> list[Cell]:
    """The (encoder, task) cells of ``suite`` that match the fnmatch patterns, encoder-major."""
    from fnmatch import fnmatchcase

    from estimators.registry import split_patterns

    def pick(names, pattern, kind):
        patterns = split_patterns(pattern)
        chosen = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
        if not chosen:
            raise InvalidInput(f"no {kind} of suite {suite.name!r} matches {pattern!r}; it has {', '.join(names)}")
        return chosen

    cells = [Cell(e, t) for e in pick(suite.encoders, encoders, "encoder") for t in pick(suite.tasks, tasks, "task")]
    return cells[:limit] if limit else cells


def _spec(suite: Suite, cell: Cell, names: list[str]) -> dict:
    return {"kind": "scores", "encoder": cell.encoder, "task": cell.task, "n_train": suite.n_train,
            "n_test": suite.n_test, "prompts": suite.prompts, "seed": suite.seeds[0],
            "estimators": {n: estimator_class(n).version for n in names}}


def _embed_pair(encoder, task, suite: Suite, data_root, cache_dir, device, download=False):
    from encoders.extract import embed

    kw = dict(seed=suite.seeds[0], prompts=suite.prompts, data_root=data_root, cache_dir=cache_dir, device=device,
              download=download)
    return embed(encoder, task, "train", n=suite.n_train, **kw), embed(encoder, task, "test", n=suite.n_test, **kw)


def run_scores(suite: Suite, cells: list[Cell], names: list[str], out: Path, data_root=None, cache_dir=None,
               device: str = "auto", download: bool = False, log=print) -> list[dict]:
    """Run the cells not yet on disk; return every cell's result (old and new)."""
    from encoders import get_encoder
    from tasks import TaskUnavailable, get_task
    from tqdm.auto import tqdm

    cell_names = [n for n in names if not estimator_class(n).pool_relative]
    pool_names = [n for n in names if estimator_class(n).pool_relative]
    todo = [c for c in cells if read_cell(cell_path(out, "scores", f"{c.encoder}__{c.task}",
                                                    _spec(suite, c, cell_names))) is None]
    log(f"{len(cells)} cells planned ({len(cells) - len(todo)} already done): {len({c.encoder for c in cells})} "
        f"encoder(s) x {len({c.task for c in cells})} task(s), {len(cell_names)} estimators, "
        f"n_train={suite.n_train}, n_test={suite.n_test}")
    unavailable: dict[str, str] = {}
    loaded = {}
    for cell in tqdm(todo, desc="cells", unit="cell", disable=not todo):
        if cell.task in unavailable:
            continue
        if cell.encoder not in loaded:
            loaded.clear()
            loaded[cell.encoder] = get_encoder(cell.encoder, device="cpu")
        task = get_task(cell.task)
        try:
            train, test = _embed_pair(loaded[cell.encoder], task, suite, data_root, cache_dir, device, download)
        except TaskUnavailable as exc:
            unavailable[cell.task] = str(exc)
            log(f"skipped task {cell.task}: {exc}")
            continue
        scores, skipped = score_all({cell.encoder: train}, cell_names, random_state=suite.seeds[0])
        logits = test.image.astype(np.float64) @ test.text.astype(np.float64).T
        write_cell(cell_path(out, "scores", f"{cell.encoder}__{cell.task}", _spec(suite, cell, cell_names)),
                   _spec(suite, cell, cell_names), {
                       "encoder": cell.encoder, "task": cell.task, "n_classes": task.n_classes,
                       "n_train": train.n, "n_test": test.n, "chance": 1.0 / task.n_classes,
                       "zero_shot_acc_test": float(np.mean(logits.argmax(axis=1) == test.labels)),
                       "scores": {s.estimator: {"score": s.score, "seconds": s.seconds} for s in scores},
                       "skipped": {s.estimator: s.reason for s in skipped},
                       "source": {"train": train.meta.get("source"), "test": test.meta.get("source")},
                       "versions": train.meta.get("versions", {})})
    if pool_names:
        _run_pool_scores(suite, cells, pool_names, out, data_root, cache_dir, device, unavailable, log)
    return [r for r in read_all(out, "scores") if r["spec"]["encoder"] in {c.encoder for c in cells}
            and r["spec"]["task"] in {c.task for c in cells}]


def _run_pool_scores(suite, cells, names, out, data_root, cache_dir, device, unavailable, log):
    """Pool-relative estimators, once per task over all of the suite's encoders (cached embeddings)."""
    from encoders import get_encoder
    from tasks import get_task

    by_task: dict[str, list[str]] = {}
    for c in cells:
        by_task.setdefault(c.task, []).append(c.encoder)
    for task_id, encoder_ids in by_task.items():
        if task_id in unavailable or len(encoder_ids) < 2:
            continue
        spec = {"kind": "pool_scores", "task": task_id, "encoders": sorted(encoder_ids), "n_train": suite.n_train,
                "prompts": suite.prompts, "seed": suite.seeds[0],
                "estimators": {n: estimator_class(n).version for n in names}}
        path = cell_path(out, "pool_scores", task_id, spec)
        if read_cell(path) is not None:
            continue
        task = get_task(task_id)
        pool = {e: _embed_pair(get_encoder(e), task, suite, data_root, cache_dir, device)[0] for e in encoder_ids}
        scores, _ = score_all(pool, names, random_state=suite.seeds[0])
        write_cell(path, spec, {"task": task_id, "scores": {
            e: {s.estimator: {"score": s.score, "seconds": s.seconds} for s in scores if s.key == e}
            for e in encoder_ids}})


def zero_shot_table(results: list[dict]) -> str:
    """Markdown: zero-shot test accuracy per encoder (rows) and task (columns), chance, and the mean."""
    from tabulate import tabulate

    tasks = sorted({r["task"] for r in results})
    encoders = sorted({r["encoder"] for r in results})
    acc = {(r["encoder"], r["task"]): r["zero_shot_acc_test"] for r in results}
    chance = {r["task"]: r["chance"] for r in results}
    rows = [["chance"] + [chance[t] for t in tasks] + [float(np.mean([chance[t] for t in tasks]))]]
    for e in encoders:
        values = [acc.get((e, t)) for t in tasks]
        done = [v for v in values if v is not None]
        rows.append([e] + values + [float(np.mean(done)) if len(done) == len(tasks) else None])
    return tabulate(rows, headers=["encoder"] + tasks + ["mean"], tablefmt="github", floatfmt=".3f",
                    missingval="-")


def main_run(args) -> int:
    from .suites import SUITES

    suite = SUITES.get(args.suite)
    names = ESTIMATORS.names("*") if args.estimators in ("all", "") else ESTIMATORS.select(args.estimators)
    cells = plan(suite, args.encoders, args.tasks, args.limit)
    out = Path(args.out or Path("results") / suite.name)
    results = run_scores(suite, cells, names, out, args.data_root, args.cache_dir, args.device, args.download,
                         log=lambda m: print(m, file=sys.stderr))
    if not results:
        raise InvalidInput("no cell could be run (every task was unavailable); see the lines above")
    table = zero_shot_table(results)
    (out / "zero_shot.md").write_text(f"Zero-shot top-1 accuracy on the test split (suite `{suite.name}`, "
                                      f"n_test={suite.n_test}, prompts={suite.prompts}).\n\n{table}\n")
    print(table)
    print(f"\nresults: {out}/scores/ ({len(results)} cells); zero-shot table: {out}/zero_shot.md")
    return 0
