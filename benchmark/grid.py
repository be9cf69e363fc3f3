"""``python -m benchmark run``: the whole grid of a suite, then the leaderboard.

1. score cells (encoder x task): embed the task's train and test samples (cached), measure
   zero-shot accuracy, score every estimator on the train embeddings (``OUT/scores/``);
   pool-relative estimators (NCTI) once per task across encoders (``OUT/pool_scores/``);
2. outcome cells (encoder x method x task x seed): fine-tune and measure in-domain gain and
   out-of-domain change on the suite's other tasks (``OUT/outcomes/``);
3. the leaderboard over everything in ``OUT`` (``benchmark.cli.board``: ``OUT/leaderboard.md``, CSVs, plots).

One result file per cell; a rerun skips the cells whose files exist, so an interrupted
run loses at most the cells in flight, and recomputes a damaged file (reported by path).
An estimator that fails on a cell is recorded in the cell's ``failed`` with a one-line
reason; every other score is kept. Cells run through ``benchmark.store.backends`` (joblib or
Dask) and carry what a worker needs: the resolved data root and cache dir, the plugins.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from benchmark.finetune.methods import METHODS
from benchmark.scoring import score_all
from benchmark.store.backends import run_cells
from benchmark.store.results import cell_path, read_cell, write_cell
from benchmark.suites import Suite, with_entries
from encoders import check_encoder_id
from estimators import InvalidInput, estimator_class, import_plugin
from estimators.registry import split_patterns
from estimators.zero_shot_acc import zero_shot_accuracy
from tasks import data_key, get_task, read_task_file, register_task


@dataclass(frozen=True)
class Cell:
    encoder: str
    task: str


@dataclass(frozen=True)
class Context:
    """Everything a worker needs to run a cell (picklable, so any backend can ship it): the
    data root and cache dir as the main process resolved them, and the plugins to import."""
    suite: Suite
    estimators: tuple[str, ...]
    out: Path
    data_root: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    download: bool = False
    plugins: tuple[str, ...] = ()
    estimator_timeout: float | None = None

    @property
    def cell_estimators(self) -> list[str]:
        return [n for n in self.estimators if not estimator_class(n).pool_relative]

    @property
    def pool_estimators(self) -> list[str]:
        return [n for n in self.estimators if estimator_class(n).pool_relative]


_plugins_lock = threading.Lock()
_plugins_loaded: set[str] = set()


def load_plugins(plugins) -> None:
    """Import each plugin once per process: every worker (loky, Dask) calls this before a cell,
    so estimators and methods that plugins register exist there too."""
    with _plugins_lock:
        for spec in plugins:
            if spec not in _plugins_loaded:
                import_plugin(spec)
                _plugins_loaded.add(spec)


def prepare_worker(ctx: Context) -> None:
    """What a process needs before it runs a cell: the plugins imported, the suite's task files registered."""
    load_plugins(ctx.plugins)
    ctx.suite.register_tasks()


def choose(suite: Suite, kind: str, pattern: str, resolve) -> list[str]:
    """The suite's ``kind`` entries (encoders, tasks, methods) matching the comma-separated fnmatch
    patterns of ``pattern``, in the suite's order, then every item without a wildcard that matches
    none of them, as ``resolve(item)`` names it (any encoder id, registered task or task file,
    registered method; it raises for an unknown one)."""
    members = getattr(suite, kind)
    items = split_patterns(pattern)
    chosen = [m for m in members if any(fnmatchcase(m, p) for p in items)]
    for item in items:
        if any(fnmatchcase(m, item) for m in members):
            continue
        if any(c in item for c in "*?["):
            raise InvalidInput(f"no {kind[:-1]} of suite {suite.name!r} matches {item!r}; it has {', '.join(members)}")
        chosen.append(resolve(item))
    return list(dict.fromkeys(chosen))


def narrow(suite: Suite, encoders: str = "*", tasks: str = "*", methods: str = "*") -> Suite:
    """``suite`` with the encoders, tasks and methods that ``choose`` picks (``run --encoders`` ...)."""
    def encoder(item):
        check_encoder_id(item)
        return item

    local = list(suite.local_tasks)

    def task(item):
        if not item.endswith(".json"):
            return get_task(item).id
        local.append(read_task_file(item))
        register_task(local[-1])
        return local[-1].id

    chosen = {"encoders": choose(suite, "encoders", encoders, encoder), "tasks": choose(suite, "tasks", tasks, task),
              "methods": choose(suite, "methods", methods, lambda m: METHODS.get(m).name)}
    for name in chosen["encoders"]:  # a suite file's own encoders too: an unknown id stops before any work
        check_encoder_id(name)
    return dataclasses.replace(with_entries(suite, **chosen), local_tasks=tuple(local))


def plan(suite: Suite, limit: int | None = None) -> list[Cell]:
    """The (encoder, task) cells of ``suite``, encoder-major (the first ``limit``)."""
    if limit is not None and limit < 1:
        raise InvalidInput(f"--limit must be at least 1, got {limit}")
    cells = [Cell(e, t) for e in suite.encoders for t in suite.tasks]
    return cells if limit is None else cells[:limit]


def score_spec(ctx: Context, cell: Cell) -> dict:
    s = ctx.suite
    return {"kind": "scores", "encoder": cell.encoder, "task": cell.task, **data_key(get_task(cell.task)),
            "n_train": s.n_train, "n_test": s.n_test, "prompts": s.prompts, "seed": s.seeds[0],
            "estimators": {n: estimator_class(n).version for n in ctx.cell_estimators}}


def score_path(ctx: Context, cell: Cell) -> Path:
    return cell_path(ctx.out, "scores", f"{cell.encoder}__{cell.task}", score_spec(ctx, cell))


def stored_score_cell(ctx: Context, cell: Cell) -> tuple[Path, dict] | None:
    """The stored score cell of this (encoder, task) sample, whatever estimators it was scored with
    (the newest if several): score cells are addressed per estimator inside one file, so adding an
    estimator extends the cell instead of starting a second generation beside it."""
    spec = score_spec(ctx, cell)
    same = {k: v for k, v in spec.items() if k != "estimators"}
    found = []
    for path in sorted((Path(ctx.out) / "scores").glob(f"{score_path(ctx, cell).name.rsplit('__', 1)[0]}__*.json")):
        record = read_cell(path, remove_damaged=True)
        if record is not None and {k: v for k, v in record["spec"].items() if k != "estimators"} == same:
            found.append((record.get("date", ""), path, record))
    return max(found, key=lambda f: f[0])[1:] if found else None


def covers(record: dict, ctx: Context) -> bool:
    """Whether a stored score cell holds every selected estimator at its current version."""
    versions = record["spec"].get("estimators", {})
    return all(versions.get(n) == estimator_class(n).version for n in ctx.cell_estimators)


def stored_score_record(ctx: Context, cell: Cell) -> dict | None:
    found = stored_score_cell(ctx, cell)
    return found[1] if found is not None and covers(found[1], ctx) else None


def embed_pair(ctx: Context, encoder_name: str, task_id: str):
    """The cached (train, test) EmbeddingSets of one cell."""
    from encoders.base import shared_encoder
    from encoders.extract import embed

    s, task = ctx.suite, get_task(task_id)
    kw = dict(seed=s.seeds[0], prompts=s.prompts, data_root=ctx.data_root, cache_dir=ctx.cache_dir,
              device=ctx.device, download=ctx.download, progress=False)
    encoder = shared_encoder(encoder_name)
    return embed(encoder, task, "train", n=s.n_train, **kw), embed(encoder, task, "test", n=s.n_test, **kw)


def score_cell(ctx: Context, cell: Cell) -> dict:
    """Embed, measure zero-shot accuracy and score one cell; returns its record (or why it was skipped)."""
    from tasks import TaskUnavailable

    prepare_worker(ctx)
    earlier = stored_score_cell(ctx, cell)
    if earlier is not None and covers(earlier[1], ctx):
        return earlier[1]
    try:
        train, test = embed_pair(ctx, cell.encoder, cell.task)
    except TaskUnavailable as exc:
        return {"unavailable": str(exc), "task": cell.task}
    # only the estimators the stored cell lacks (or holds at another version) are computed
    kept = _kept_entries(earlier[1], ctx) if earlier is not None else {}
    todo = [n for n in ctx.cell_estimators if n not in kept.get("versions", {})]
    scores, missed = score_all({cell.encoder: train}, todo, random_state=ctx.suite.seeds[0],
                               check_sizes=False, time_limit=ctx.estimator_timeout)
    n_classes = get_task(cell.task).n_classes
    record = {"suite": ctx.suite.name, "encoder": cell.encoder, "task": cell.task, "n_classes": n_classes,
              "n_train": train.n,
              "n_test": test.n, "chance": 1.0 / n_classes,
              "zero_shot_acc_test": (None if test.text is None
                                     else zero_shot_accuracy(test.image, test.labels, test.text)),
              "scores": {**kept.get("scores", {}),
                         **{s.estimator: {"score": s.score, "seconds": s.seconds} for s in scores}},
              "skipped": {**kept.get("skipped", {}),
                          **{s.estimator: s.reason for s in missed if s.status == "skipped"}},
              "failed": {**kept.get("failed", {}), **{s.estimator: s.reason for s in missed if s.status == "failed"}},
              "source": {"train": train.meta.get("source"), "test": test.meta.get("source")},
              "versions": train.meta.get("versions", {})}
    spec = score_spec(ctx, cell)
    spec["estimators"] = dict(sorted({**kept.get("versions", {}), **spec["estimators"]}.items()))
    path = cell_path(ctx.out, "scores", f"{cell.encoder}__{cell.task}", spec)
    write_cell(path, spec, record)
    if earlier is not None and earlier[0] != path:
        earlier[0].unlink(missing_ok=True)  # one generation per cell: the extended cell replaces it
    return read_cell(path)


def _kept_entries(record: dict, ctx: Context) -> dict:
    """What a stored score cell keeps when it is extended: every estimator's entry whose version is the
    current one (or that this run did not select), by kind, with those versions."""
    versions = record["spec"].get("estimators", {})
    selected = set(ctx.cell_estimators)
    keep = {n for n, v in versions.items() if n not in selected or v == estimator_class(n).version}
    return {"versions": {n: versions[n] for n in keep},
            **{kind: {n: v for n, v in record.get(kind, {}).items() if n in keep}
               for kind in ("scores", "skipped", "failed")}}


def pool_spec(ctx: Context, task_id: str, encoder_ids: list[str]) -> dict:
    s = ctx.suite
    return {"kind": "pool_scores", "task": task_id, **data_key(get_task(task_id)), "encoders": sorted(encoder_ids),
            "n_train": s.n_train, "prompts": s.prompts, "seed": s.seeds[0],
            "estimators": {n: estimator_class(n).version for n in ctx.pool_estimators}}


def pool_score_task(ctx: Context, task_id: str, encoder_ids: list[str]) -> dict:
    """Pool-relative estimators on one task across encoders (from the cached embeddings)."""
    prepare_worker(ctx)
    spec = pool_spec(ctx, task_id, encoder_ids)
    path = cell_path(ctx.out, "pool_scores", task_id, spec)
    if (done := read_cell(path)) is not None:
        return done
    pool = {e: embed_pair(ctx, e, task_id)[0] for e in encoder_ids}
    scores, missed = score_all(pool, ctx.pool_estimators, random_state=ctx.suite.seeds[0], check_sizes=False,
                                  time_limit=ctx.estimator_timeout)
    write_cell(path, spec, {"task": task_id, "scores": {
        e: {x.estimator: {"score": x.score, "seconds": x.seconds} for x in scores if x.key == e}
        for e in encoder_ids}, "failed": {x.estimator: x.reason for x in missed if x.status == "failed"}})
    return read_cell(path)


def stored_records(cells: list, path_of) -> dict:
    """Each cell's stored record, or None where its result file is missing or damaged (a damaged
    file is reported by path and removed, so the cell is recomputed)."""
    return {c: read_cell(path_of(c), remove_damaged=True) for c in cells}


def run_missing(fn, cells: list, stored: dict, n_jobs: int, backend: str, scheduler: str | None,
                desc: str) -> list[dict]:
    """``fn`` on the backend for the cells without a ``stored`` record; the stored record for
    the others (so a rerun starts no worker). Records in cell order."""
    pending = [c for c in cells if stored[c] is None]
    fresh = dict(zip(pending, run_cells(fn, pending, n_jobs, backend, scheduler, desc=desc)))
    return [fresh[c] if stored[c] is None else stored[c] for c in cells]


def run_scores(ctx: Context, cells: list[Cell], n_jobs: int = 1, backend: str = "loky",
               scheduler: str | None = None, log=print) -> tuple[list[dict], list[dict]]:
    """Run the score cells not yet on disk, then the pool-relative ones; return (cells, pools)."""
    stored = {c: stored_score_record(ctx, c) for c in cells}
    done = sum(r is not None for r in stored.values())
    log(f"{len(cells)} score cells planned ({done} already done): {len({c.encoder for c in cells})} encoder(s) x "
        f"{len({c.task for c in cells})} task(s), {len(ctx.estimators)} estimators, "
        f"n_train={ctx.suite.n_train}, n_test={ctx.suite.n_test}")
    records = run_missing(functools.partial(score_cell, ctx), cells, stored, n_jobs, backend, scheduler, "score cells")
    for task, reason in sorted(unavailable_tasks(ctx, records).items()):
        log(f"skipped task {task}: {reason}")
    results = [r for r in records if "unavailable" not in r]
    wanted = {"train": ctx.suite.n_train, "test": ctx.suite.n_test}
    for task, split, n in sorted({(r["task"], s, r[f"n_{s}"]) for r in results for s in wanted
                                  if wanted[s] is not None and r[f"n_{s}"] < wanted[s]}):
        log(f"task {task}: its {split} split has {n} images, fewer than n_{split}={wanted[split]}; "
            f"all of them are used")
    by_task: dict[str, list[str]] = {}
    for r in results:
        by_task.setdefault(r["task"], []).append(r["encoder"])
    pools = [pool_score_task(ctx, t, e) for t, e in sorted(by_task.items()) if len(e) >= 2 and ctx.pool_estimators]
    for line in failure_lines(results, pools):
        log(line)
    return results, pools


def unavailable_tasks(ctx: Context, records: list[dict]) -> dict[str, str]:
    """``{task: reason}`` for the tasks the workers found unavailable. A task that a worker
    lacks but this process can read is an error, never a silent skip: the workers do not
    see the data root."""
    from tasks import TaskUnavailable, get_task

    reasons = {r["task"]: r["unavailable"] for r in records if "unavailable" in r}
    for task, reason in reasons.items():
        try:
            get_task(task).labels("test", data_root=ctx.data_root)
        except TaskUnavailable:
            continue
        raise InvalidInput(f"task {task} is unavailable on a worker ({reason}) but present here under "
                           f"{ctx.data_root}: every worker needs the data root at the same path (a shared "
                           f"file system)")
    return reasons


def failure_lines(results: list[dict], pools: list[dict]) -> list[str]:
    """One line per estimator that failed somewhere: on how many cells, and the first reason."""
    failures: dict[str, list[str]] = {}
    for r in results:
        for name, reason in r.get("failed", {}).items():
            failures.setdefault(name, []).append(f"{r['encoder']}/{r['task']}: {reason}")
    for p in pools:
        for name, reason in p.get("failed", {}).items():
            failures.setdefault(name, []).append(f"pool of {p['task']}: {reason}")
    return [f"estimator {name} failed on {len(where)} cell(s), its other scores are kept (first: {where[0]})"
            for name, where in sorted(failures.items())]


@dataclass(frozen=True)
class OutcomeCell:
    encoder: str
    method: str
    task: str
    seed: int


def outcome_cell(ctx: Context, eval_tasks: tuple[str, ...], cell: OutcomeCell) -> dict:
    """One fine-tuning cell's record; a method that does not apply to the encoder (``NotApplicable``:
    e.g. clip_adapter on an image-only encoder) gives ``{"not_applicable": reason}`` and no file."""
    from benchmark.finetune.methods import NotApplicable
    from benchmark.finetune.outcomes import run_outcome

    prepare_worker(ctx)
    try:
        return run_outcome(cell.encoder, cell.method, cell.task, cell.seed, eval_tasks, ctx.suite.finetune,
                           ctx.out, ctx.data_root, ctx.cache_dir, ctx.device, progress=False)
    except NotApplicable as exc:
        return {"not_applicable": str(exc), "encoder": cell.encoder, "method": cell.method, "task": cell.task}


def run_outcomes(ctx: Context, cells: list[OutcomeCell], eval_tasks: tuple[str, ...], n_jobs: int = 1,
                 backend: str = "loky", scheduler: str | None = None, log=print) -> list[dict]:
    from benchmark.finetune.outcomes import outcome_path

    stored = stored_records(cells, lambda c: outcome_path(ctx.out, c.encoder, c.method, c.task, c.seed, eval_tasks,
                                                          ctx.suite.finetune))
    done = sum(r is not None for r in stored.values())
    log(f"{len(cells)} fine-tuning cells planned ({done} already done): {len({c.method for c in cells})} "
        f"method(s) x {len({c.seed for c in cells})} seed(s); out-of-domain tasks: {', '.join(eval_tasks)}")
    records = run_missing(functools.partial(outcome_cell, ctx, eval_tasks), cells, stored, n_jobs, backend, scheduler,
                          "fine-tuning cells")
    skipped = {(r["encoder"], r["method"]): r["not_applicable"] for r in records if "not_applicable" in r}
    for (encoder, method), reason in sorted(skipped.items()):
        log(f"skipped fine-tuning {encoder} x {method}: {reason}")
    return records


def default_jobs(device: str) -> int:
    """``--n-jobs`` when not given: one cell per usable CPU core (at most 8; joblib then gives
    each worker one BLAS thread) on CPU, which measured ~1.3x the throughput of one cell on
    two threads; one cell at a time on an accelerator."""
    import os

    from encoders.extract import pick_device

    if pick_device(device) != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8)


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


def parse_seeds(text: str | None, suite: Suite) -> tuple[int, ...]:
    if not text:
        return suite.seeds
    try:
        seeds = tuple(int(s) for s in split_patterns(text))
    except ValueError:
        raise InvalidInput(f"--seeds takes comma-separated integers, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise InvalidInput(f"--seeds must be non-negative integers, got {text!r}")
    if any(s >= 2**32 for s in seeds):
        raise InvalidInput(f"--seeds must be below 2**32 (numpy and torch seeds), got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise InvalidInput(f"--seeds lists a seed twice: {text!r}")
    return seeds


def run_suite(suite: Suite, estimators: list[str], seeds: tuple[int, ...], out: Path, *, limit: int | None = None,
              finetune: bool = True, n_jobs: int | None = None, backend: str = "loky", scheduler: str | None = None,
              data_root=None, cache_dir=None, device: str = "auto", download: bool = False, plugins=(),
              estimator_timeout: float | None = None, log=None) -> dict:
    """Run ``suite`` into ``out``: the score cells, ``zero_shot.md``, the fine-tuning cells (unless
    ``finetune`` is False); cells already in ``out`` are skipped. Returns ``{"results" (the score
    records), "zero_shot" (the table)}``; ``benchmark.cli.board.build_board(out, out)`` then builds the board."""
    import os

    from benchmark.store.validate import at_least, check_device
    from encoders.cache import ArrayCache, atomic_write_bytes, cache_root, ensure_writable
    from tasks.task import data_root as resolve_data_root

    log = log or functools.partial(print, file=sys.stderr)
    cells = plan(suite, limit)
    at_least("--n-jobs", n_jobs, 1)
    if estimator_timeout is not None and not estimator_timeout > 0:
        raise InvalidInput(f"--estimator-timeout must be a positive number of seconds, got {estimator_timeout}")
    check_device(device)
    out = ensure_writable(Path(out), "--out")
    cache_dir = os.path.abspath(cache_root(cache_dir))
    ensure_writable(ArrayCache(cache_dir).folder, "--cache-dir (embedding cache)")
    plugins = tuple(os.path.abspath(p) if p.endswith(".py") else p for p in plugins)
    _plugins_loaded.update(plugins)   # the caller imported them in this process already
    ctx = Context(suite, tuple(estimators), out, os.path.abspath(resolve_data_root(data_root)), cache_dir, device,
                  download, plugins, estimator_timeout)
    n_jobs = n_jobs or default_jobs(device)
    log(f"data root: {ctx.data_root}; embedding cache: {ctx.cache_dir}; results: {out}")
    results, _ = run_scores(ctx, cells, n_jobs, backend, scheduler, log=log)
    if not results:
        raise InvalidInput("no cell could be run (every task was unavailable); see the lines above")
    table = zero_shot_table(results)
    atomic_write_bytes(out / "zero_shot.md", (f"Zero-shot top-1 accuracy on the test split (suite `{suite.name}`, "
                                              f"n_test={suite.n_test}, prompts={suite.prompts}).\n\n"
                                              f"{table}\n").encode())
    available = tuple(t for t in suite.tasks if t in {r["task"] for r in results})
    outcome_cells = [OutcomeCell(r["encoder"], m, r["task"], s) for r in results for m in suite.methods for s in seeds]
    if finetune:
        run_outcomes(ctx, outcome_cells, available, n_jobs, backend, scheduler, log=log)
    return {"results": results, "zero_shot": table}
