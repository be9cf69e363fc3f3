"""``python -m benchmark run``: embed every (encoder, task) of a suite, measure zero-shot
accuracy, and score every estimator on the zero-shot training embeddings.

Each (encoder, task) is one result file under ``OUT/scores/`` and each task's
pool-relative scores (NCTI) one file under ``OUT/pool_scores/``; a rerun skips the
cells whose files exist, so an interrupted run resumes where it stopped. Cells run
through ``benchmark.backends`` (joblib or Dask).
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from estimators import ESTIMATORS, InvalidInput, estimator_class
from estimators.registry import split_patterns

from .backends import run_cells
from .results import cell_path, read_cell, write_cell
from .scoring import score_all
from .suites import SUITES, Suite


@dataclass(frozen=True)
class Cell:
    encoder: str
    task: str


@dataclass(frozen=True)
class Context:
    """Everything a worker needs to run a cell (picklable, so any backend can ship it)."""
    suite: Suite
    estimators: tuple[str, ...]
    out: Path
    data_root: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    download: bool = False

    @property
    def cell_estimators(self) -> list[str]:
        return [n for n in self.estimators if not estimator_class(n).pool_relative]

    @property
    def pool_estimators(self) -> list[str]:
        return [n for n in self.estimators if estimator_class(n).pool_relative]


def plan(suite: Suite, encoders: str = "*", tasks: str = "*", limit: int | None = None) -> list[Cell]:
    """The (encoder, task) cells of ``suite`` that match the fnmatch patterns, encoder-major."""
    def pick(names, pattern, kind):
        patterns = split_patterns(pattern)
        chosen = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
        if not chosen:
            raise InvalidInput(f"no {kind} of suite {suite.name!r} matches {pattern!r}; it has {', '.join(names)}")
        return chosen

    cells = [Cell(e, t) for e in pick(suite.encoders, encoders, "encoder") for t in pick(suite.tasks, tasks, "task")]
    return cells[:limit] if limit else cells


def score_spec(ctx: Context, cell: Cell) -> dict:
    s = ctx.suite
    return {"kind": "scores", "encoder": cell.encoder, "task": cell.task, "n_train": s.n_train, "n_test": s.n_test,
            "prompts": s.prompts, "seed": s.seeds[0],
            "estimators": {n: estimator_class(n).version for n in ctx.cell_estimators}}


def score_path(ctx: Context, cell: Cell) -> Path:
    return cell_path(ctx.out, "scores", f"{cell.encoder}__{cell.task}", score_spec(ctx, cell))


@functools.lru_cache(maxsize=1)
def _encoder(name: str):
    """One encoder per worker process at a time (cells are encoder-major)."""
    from encoders import get_encoder

    return get_encoder(name, device="cpu")


def embed_pair(ctx: Context, encoder_name: str, task_id: str):
    """The cached (train, test) EmbeddingSets of one cell."""
    from encoders.extract import embed
    from tasks import get_task

    s, task = ctx.suite, get_task(task_id)
    kw = dict(seed=s.seeds[0], prompts=s.prompts, data_root=ctx.data_root, cache_dir=ctx.cache_dir,
              device=ctx.device, download=ctx.download, progress=False)
    encoder = _encoder(encoder_name)
    return embed(encoder, task, "train", n=s.n_train, **kw), embed(encoder, task, "test", n=s.n_test, **kw)


def score_cell(ctx: Context, cell: Cell) -> dict:
    """Embed, measure zero-shot accuracy and score one cell; returns its record (or why it was skipped)."""
    from tasks import TaskUnavailable, get_task

    path = score_path(ctx, cell)
    if (done := read_cell(path)) is not None:
        return done
    try:
        train, test = embed_pair(ctx, cell.encoder, cell.task)
    except TaskUnavailable as exc:
        return {"unavailable": str(exc), "task": cell.task}
    scores, skipped = score_all({cell.encoder: train}, ctx.cell_estimators, random_state=ctx.suite.seeds[0])
    logits = test.image.astype(np.float64) @ test.text.astype(np.float64).T
    n_classes = get_task(cell.task).n_classes
    record = {"suite": ctx.suite.name, "encoder": cell.encoder, "task": cell.task, "n_classes": n_classes, "n_train": train.n,
              "n_test": test.n, "chance": 1.0 / n_classes,
              "zero_shot_acc_test": float(np.mean(logits.argmax(axis=1) == test.labels)),
              "scores": {s.estimator: {"score": s.score, "seconds": s.seconds} for s in scores},
              "skipped": {s.estimator: s.reason for s in skipped},
              "source": {"train": train.meta.get("source"), "test": test.meta.get("source")},
              "versions": train.meta.get("versions", {})}
    write_cell(path, score_spec(ctx, cell), record)
    return read_cell(path)


def pool_score_task(ctx: Context, task_id: str, encoder_ids: list[str]) -> dict:
    """Pool-relative estimators on one task across encoders (from the cached embeddings)."""
    s = ctx.suite
    spec = {"kind": "pool_scores", "task": task_id, "encoders": sorted(encoder_ids), "n_train": s.n_train,
            "prompts": s.prompts, "seed": s.seeds[0],
            "estimators": {n: estimator_class(n).version for n in ctx.pool_estimators}}
    path = cell_path(ctx.out, "pool_scores", task_id, spec)
    if (done := read_cell(path)) is not None:
        return done
    pool = {e: embed_pair(ctx, e, task_id)[0] for e in encoder_ids}
    scores, _ = score_all(pool, ctx.pool_estimators, random_state=s.seeds[0])
    write_cell(path, spec, {"task": task_id, "scores": {
        e: {x.estimator: {"score": x.score, "seconds": x.seconds} for x in scores if x.key == e}
        for e in encoder_ids}})
    return read_cell(path)


def run_scores(ctx: Context, cells: list[Cell], n_jobs: int = 1, backend: str = "loky",
               scheduler: str | None = None, log=print) -> tuple[list[dict], list[dict]]:
    """Run the score cells not yet on disk, then the pool-relative ones; return (cells, pools)."""
    done = sum(score_path(ctx, c).is_file() for c in cells)
    log(f"{len(cells)} score cells planned ({done} already done): {len({c.encoder for c in cells})} encoder(s) x "
        f"{len({c.task for c in cells})} task(s), {len(ctx.estimators)} estimators, "
        f"n_train={ctx.suite.n_train}, n_test={ctx.suite.n_test}")
    records = run_cells(functools.partial(score_cell, ctx), cells, n_jobs, backend, scheduler, desc="score cells")
    for task in sorted({r["task"]: r["unavailable"] for r in records if "unavailable" in r}.items()):
        log(f"skipped task {task[0]}: {task[1]}")
    results = [r for r in records if "unavailable" not in r]
    by_task: dict[str, list[str]] = {}
    for r in results:
        by_task.setdefault(r["task"], []).append(r["encoder"])
    pools = [pool_score_task(ctx, t, e) for t, e in sorted(by_task.items()) if len(e) >= 2 and ctx.pool_estimators]
    return results, pools


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
    suite = SUITES.get(args.suite)
    names = ESTIMATORS.names("*") if args.estimators in ("all", "") else ESTIMATORS.select(args.estimators)
    cells = plan(suite, args.encoders, args.tasks, args.limit)
    out = Path(args.out or Path("results") / suite.name)
    ctx = Context(suite, tuple(names), out, args.data_root, args.cache_dir, args.device, args.download)
    results, _ = run_scores(ctx, cells, args.n_jobs, args.backend, args.scheduler,
                            log=lambda m: print(m, file=sys.stderr))
    if not results:
        raise InvalidInput("no cell could be run (every task was unavailable); see the lines above")
    table = zero_shot_table(results)
    from encoders.cache import atomic_write_bytes

    atomic_write_bytes(out / "zero_shot.md", (f"Zero-shot top-1 accuracy on the test split (suite `{suite.name}`, "
                                              f"n_test={suite.n_test}, prompts={suite.prompts}).\n\n{table}\n").encode())
    print(table)
    print(f"\nresults: {out}/scores/ ({len(results)} cells); zero-shot table: {out}/zero_shot.md")
    return 0
