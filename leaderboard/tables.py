"""Collect a results folder into the evaluator's tables (scores, outcomes) and provenance."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.outcomes import cell_deltas
from benchmark.results import read_all
from estimators import InvalidInput

OUTCOME_FIELDS = ("id_gain", "id_gain_norm", "ood_change")


def _latest(records: list[dict], key) -> list[dict]:
    """One record per key: the newest (a results folder may hold cells of an older configuration)."""
    newest: dict = {}
    for r in sorted(records, key=lambda r: r.get("date", "")):
        newest[key(r)] = r
    return [newest[k] for k in sorted(newest)]


def collect(results: Path) -> dict:
    """``{"scores", "outcomes", "seconds", "score_cells", "outcome_cells"}`` from ``results``."""
    results = Path(results)
    if not results.is_dir():
        raise InvalidInput(f"results folder {results} does not exist")
    score_cells = _latest(read_all(results, "scores"), lambda r: (r["encoder"], r["task"]))
    pool_cells = _latest(read_all(results, "pool_scores"), lambda r: r["task"])
    outcome_cells = _latest(read_all(results, "outcomes"),
                            lambda r: (r["encoder"], r["method"], r["target"], r["seed"]))
    rows = [(r["encoder"], r["task"], name, v["score"], v["seconds"])
            for r in score_cells for name, v in r["scores"].items()]
    rows += [(encoder, p["task"], name, v["score"], v["seconds"])
             for p in pool_cells for encoder, by_name in p["scores"].items() for name, v in by_name.items()]
    table = pd.DataFrame(rows, columns=["encoder", "task", "estimator", "score", "seconds"])
    # deltas are recomputed from the stored accuracies, so every cell follows the current definition;
    # id_gain_norm is undefined where zero-shot accuracy is already 1: such cells are left out
    measured = [{"encoder": r["encoder"], "method": r["method"], "task": r["target"], "seed": r["seed"],
                 **{k: d[k] for k in OUTCOME_FIELDS}} for r in outcome_cells for d in [cell_deltas(r)]]
    outcomes = pd.DataFrame([m for m in measured if all(m[k] is not None for k in OUTCOME_FIELDS)],
                            columns=["encoder", "method", "task", "seed", *OUTCOME_FIELDS])
    return {"scores": table.drop(columns="seconds"), "seconds": table, "outcomes": outcomes,
            "score_cells": score_cells, "outcome_cells": outcome_cells}


def completeness(collected: dict) -> list[str]:
    """What is missing for a full grid over the encoders, tasks, methods and seeds present."""
    cells, outcomes = collected["score_cells"], collected["outcomes"]
    missing = []
    if not cells:
        missing.append("no score cells")
    if outcomes.empty:
        missing.append("no fine-tuning outcomes")
        return missing
    grid = {(r["encoder"], r["task"]) for r in cells}
    methods, seeds = sorted(set(outcomes["method"])), sorted(set(outcomes["seed"]))
    have = set(zip(outcomes["encoder"], outcomes["task"], outcomes["method"], outcomes["seed"]))
    absent = [(e, t, m, s) for e, t in sorted(grid) for m in methods for s in seeds if (e, t, m, s) not in have]
    if absent:
        missing.append(f"{len(absent)} of {len(grid) * len(methods) * len(seeds)} fine-tuning cells")
    no_scores = {(e, t) for e, t, *_ in have} - grid
    if no_scores:
        missing.append(f"{len(no_scores)} (encoder, task) score cells")
    return missing
