"""The evaluator's tables, from a results folder (the cells) or from a board folder (its CSVs),
and the board folder's own tables (``write_tables``); ``benchmark.cli.board`` builds the board from them.

A board folder holds everything needed to rebuild its board exactly, without the cells:

- ``scores.csv``: ``encoder, task, estimator, score, seconds`` (full precision);
- ``outcomes.csv`` (``OUTCOME_COLUMNS``): per fine-tuning cell the target's test-sample size
  ``n_test`` and correct counts ``correct_zs``, ``correct_ft``; ``ood_change = ood_num / ood_den``
  exactly (``ood_den``: out-of-domain tasks counted x lcm of their sample sizes); and the floats
  ``acc_zs``, ``id_gain``, ``id_gain_norm``, ``ood_change`` they give;
- ``not_scored.csv``: ``encoder, task, estimator, status, reason`` for every estimator a cell
  skipped or failed;
- ``estimators.csv``: ``estimator, higher_is_better, baseline, version`` of every scored estimator, so the
  board rebuilds from its tables without the plugins that scored it;
- ``provenance.json``: suite, encoders, tasks, methods, seeds, cell counts, versions, newest date.

An ``outcomes.csv`` written before the counts were stored (only the three deltas, 10 significant
digits) is read by recovering them: every delta is snapped to its fraction (denominator <= 10,000),
``acc_zs = 1 - id_gain / id_gain_norm`` (one value per encoder x task), ``n_test`` = the lcm of the
denominators of a task's accuracies and ``ood_den`` of its ``ood_change`` values.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pandas as pd

from benchmark.evaluation.deltas import exact_deltas, exact_fraction
from benchmark.store.results import read_all
from estimators import InvalidInput

SCORE_COLUMNS = ("encoder", "task", "estimator", "score", "seconds")
OUTCOME_COLUMNS = ("encoder", "method", "task", "seed", "n_test", "correct_zs", "correct_ft", "acc_zs",
                   "id_gain", "id_gain_norm", "ood_num", "ood_den", "ood_change")
NOT_SCORED_COLUMNS = ("encoder", "task", "estimator", "status", "reason")
ESTIMATOR_COLUMNS = ("estimator", "higher_is_better", "baseline", "version")
NO_SCORES, NO_OUTCOMES = "every score cell (none computed yet)", "every fine-tuning cell (none computed yet)"
EXACT = ("acc_zs", "id_gain", "id_gain_norm", "ood_change")


def _latest(records: list[dict], key) -> list[dict]:
    """One record per key: the newest (a results folder may hold cells of an older configuration)."""
    newest: dict = {}
    for r in sorted(records, key=lambda r: r.get("date", "")):
        newest[key(r)] = r
    return [newest[k] for k in sorted(newest)]


def collect(results: Path) -> dict:
    """``{"scores", "outcomes", "not_scored", "provenance"}`` from the cells of a results folder;
    the outcomes' ``EXACT`` columns hold ``fractions.Fraction`` values (``exact_deltas``)."""
    results = Path(results)
    if results.is_file():
        raise InvalidInput(f"--results {results} is a file, not a results folder (written by `run`)")
    if not results.is_dir():
        raise InvalidInput(f"results folder {results} does not exist")
    score_cells = _latest(read_all(results, "scores"), lambda r: (r["encoder"], r["task"]))
    pool_cells = _latest(read_all(results, "pool_scores"), lambda r: r["task"])
    outcome_cells = _latest(read_all(results, "outcomes"),
                            lambda r: (r["encoder"], r["method"], r["target"], r["seed"]))
    if not (score_cells or pool_cells or outcome_cells):
        raise InvalidInput(f"{results} holds no result cells (no scores/ or outcomes/ files): point --results at "
                           f"a folder written by `run`")
    rows = [(r["encoder"], r["task"], name, v["score"], v["seconds"])
            for r in score_cells for name, v in r["scores"].items()]
    rows += [(encoder, p["task"], name, v["score"], v["seconds"])
             for p in pool_cells for encoder, by_name in p["scores"].items() for name, v in by_name.items()]
    missed = [(r["encoder"], r["task"], name, status, reason) for r in score_cells
              for status in ("skipped", "failed") for name, reason in r.get(status, {}).items()]
    missed += [(encoder, p["task"], name, status, reason) for p in pool_cells
               for status in ("skipped", "failed") for name, reason in p.get(status, {}).items()
               for encoder in p.get("spec", {}).get("encoders", p["scores"])]
    # every cell with a fine-tuned accuracy; a delta that does not exist (no zero-shot accuracy: an
    # image-only encoder; id_gain_norm at acc_zs = 1) is None, and the tasks protocol leaves the row out
    measured = [{"encoder": r["encoder"], "method": r["method"], "task": r["target"], "seed": r["seed"],
                 **_outcome(d)} for r in outcome_cells for d in [exact_deltas(r)] if d["correct_ft"] is not None]
    versions = {}
    for r in score_cells + outcome_cells:
        versions.update(r.get("versions", {}))
    provenance = {
        "suite": ",".join(sorted({r["suite"] for r in score_cells if "suite" in r})) or None,
        "encoders": sorted({r["encoder"] for r in score_cells}), "tasks": sorted({r["task"] for r in score_cells}),
        "methods": sorted({r["method"] for r in outcome_cells}), "seeds": sorted({r["seed"] for r in outcome_cells}),
        "score_cells": len(score_cells), "n_train": sorted({r["n_train"] for r in score_cells}),
        "outcome_cells": len(outcome_cells), "versions": dict(sorted(versions.items())),
        "newest": max((r.get("date", "") for r in score_cells + outcome_cells), default="") or None}
    scored = _frame(rows, SCORE_COLUMNS, ["estimator", "encoder", "task"])
    return {"scores": scored, "estimators": describe_estimators(sorted(set(scored["estimator"]))),
            "outcomes": _frame([[m[c] for c in OUTCOME_COLUMNS] for m in measured], OUTCOME_COLUMNS,
                               ["encoder", "method", "task", "seed"]),
            "not_scored": _frame(missed, NOT_SCORED_COLUMNS, ["estimator", "encoder", "task"]),
            "provenance": provenance}


def _outcome(d: dict) -> dict:
    return {"n_test": d["n_test"], "correct_zs": d["correct_zs"], "correct_ft": d["correct_ft"], "acc_zs": d["acc_zs"],
            "id_gain": d["id_gain"], "id_gain_norm": d["id_gain_norm"],
            "ood_num": None if d["ood_change"] is None else int(d["ood_change"] * d["ood_den"]),
            "ood_den": d["ood_den"], "ood_change": d["ood_change"]}


def describe_estimators(names: list[str], known: pd.DataFrame | None = None) -> pd.DataFrame:
    """``ESTIMATOR_COLUMNS`` for ``names``: a board's own ``estimators.csv`` rows (``known``) first, else
    the registry's declaration; InvalidInput for a name that is in neither (a plugin not loaded)."""
    from estimators import ESTIMATORS

    stored = {} if known is None else {r.estimator: r for r in known.itertuples()}
    rows = []
    for name in names:
        if name in stored:
            r = stored[name]
            rows.append((name, _flag(r.higher_is_better), _flag(r.baseline), str(r.version)))
        elif name in ESTIMATORS:
            cls = ESTIMATORS.get(name)
            rows.append((name, bool(cls.higher_is_better), bool(cls.baseline), str(cls.version)))
        else:
            raise InvalidInput(f"estimator {name!r} is not registered and the board has no estimators.csv row "
                               f"for it: load its plugin (--plugins) or add the row")
    return pd.DataFrame(rows, columns=list(ESTIMATOR_COLUMNS))


def _flag(value) -> bool:
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise InvalidInput(f"estimators.csv: {value!r} is not true or false")
    return text in ("true", "1")


def _frame(rows, columns, order) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).sort_values(order, kind="stable", ignore_index=True)


def write_tables(collected: dict, out: Path) -> None:
    """Write the four files of a board folder (see the module docstring)."""
    from encoders.cache import atomic_write_bytes

    outcomes = collected["outcomes"].astype({c: float for c in EXACT})
    for name, frame in (("scores", collected["scores"]), ("outcomes", outcomes),
                        ("not_scored", collected["not_scored"]), ("estimators", collected["estimators"])):
        atomic_write_bytes(Path(out) / f"{name}.csv", frame.to_csv(index=False).encode())
    atomic_write_bytes(Path(out) / "provenance.json",
                       (json.dumps(collected["provenance"], indent=1, sort_keys=True) + "\n").encode())


def read_tables(folder: Path) -> dict:
    """``collect``'s tables from a board folder (``scores.csv`` and ``outcomes.csv`` required)."""
    folder = Path(folder)
    for name in ("scores.csv", "outcomes.csv"):
        if not (folder / name).is_file():
            raise InvalidInput(f"{folder} is not a board folder: {name} is missing")
    scores = _read_csv(folder / "scores.csv", SCORE_COLUMNS, {"encoder": str, "task": str, "estimator": str})
    raw = _read_csv(folder / "outcomes.csv", OUTCOME_COLUMNS[:4] + ("id_gain", "id_gain_norm", "ood_change"),
                    {"encoder": str, "method": str, "task": str})
    outcomes = _exact_outcomes(raw) if set(OUTCOME_COLUMNS) <= set(raw.columns) else _recovered_outcomes(raw)
    not_scored = (_read_csv(folder / "not_scored.csv", NOT_SCORED_COLUMNS, {c: str for c in NOT_SCORED_COLUMNS})
                  if (folder / "not_scored.csv").is_file() else pd.DataFrame(columns=list(NOT_SCORED_COLUMNS)))
    provenance = {"suite": None, "encoders": sorted(set(scores["encoder"])), "tasks": sorted(set(scores["task"])),
                  "methods": sorted(set(outcomes["method"])), "seeds": sorted(set(outcomes["seed"].tolist())),
                  "score_cells": None, "n_train": None, "outcome_cells": len(outcomes), "versions": {}, "newest": None}
    if (folder / "provenance.json").is_file():
        provenance.update(json.loads((folder / "provenance.json").read_text()))
    known = (_read_csv(folder / "estimators.csv", ESTIMATOR_COLUMNS, {"estimator": str, "version": str})
             if (folder / "estimators.csv").is_file() else None)
    return {"scores": _frame(scores[list(SCORE_COLUMNS)].values.tolist(), SCORE_COLUMNS,
                             ["estimator", "encoder", "task"]),
            "estimators": describe_estimators(sorted(set(scores["estimator"])), known),
            "outcomes": _counts_as_int(_frame(outcomes[list(OUTCOME_COLUMNS)].values.tolist(), OUTCOME_COLUMNS,
                                              ["encoder", "method", "task", "seed"])),
            "not_scored": _frame(not_scored[list(NOT_SCORED_COLUMNS)].values.tolist(), NOT_SCORED_COLUMNS,
                                 ["estimator", "encoder", "task"]),
            "provenance": provenance}


_COUNTS = ("n_test", "correct_zs", "correct_ft", "ood_num", "ood_den")


def _counts_as_int(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Count columns (and seed) as integers; one with an absent count keeps Python ints and None."""
    return outcomes.astype({c: int for c in (*_COUNTS, "seed") if outcomes[c].notna().all()})


def _read_csv(path: Path, columns, dtype) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as err:
        raise InvalidInput(f"cannot read {path}: {err}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{path} is missing column(s) {missing}")
    return frame


def _exact_outcomes(raw: pd.DataFrame) -> pd.DataFrame:
    """Exact deltas from the stored counts, each checked against the float beside it; an empty count
    (no zero-shot accuracy, or no out-of-domain change) gives None for every delta that needs it."""
    out = raw.copy()
    n, c0, c1, num, den = ([None if pd.isna(v) else int(v) for v in raw[c]]
                           for c in ("n_test", "correct_zs", "correct_ft", "ood_num", "ood_den"))
    out["correct_zs"], out["ood_num"], out["ood_den"] = c0, num, den
    out["acc_zs"] = [None if a is None else Fraction(a, m) for a, m in zip(c0, n)]
    out["id_gain"] = [None if a is None else Fraction(b - a, m) for a, b, m in zip(c0, c1, n)]
    out["id_gain_norm"] = [None if a is None or a == m else Fraction(b - a, m - a) for a, b, m in zip(c0, c1, n)]
    out["ood_change"] = [None if a is None else Fraction(a, b) for a, b in zip(num, den)]
    for c in EXACT:
        off = [i for i, (e, v) in enumerate(zip(out[c], raw[c]))
               if (e is None) != pd.isna(v) or (e is not None and not abs(float(e) - float(v)) <= 1e-9)]
        if off:
            row = raw.loc[off[0], ["encoder", "method", "task", "seed"]].to_dict()
            raise InvalidInput(f"outcomes.csv: {c} disagrees with the counts in {len(off)} row(s), first at {row}")
    return out


def _recovered_outcomes(raw: pd.DataFrame) -> pd.DataFrame:
    """Counts recovered from an outcomes.csv with only the three deltas (see the module docstring)."""
    out = raw.copy()
    try:
        for c in ("id_gain", "ood_change"):
            out[c] = [exact_fraction(float(v)) for v in raw[c]]
        zs = {}
        for key, g, gn in zip(zip(raw["encoder"], raw["task"]), raw["id_gain"], raw["id_gain_norm"]):
            if g != 0:
                zs.setdefault(key, set()).add(exact_fraction(1 - float(g) / float(gn)))
    except InvalidInput as err:
        raise InvalidInput(f"outcomes.csv: a delta {err}") from None
    keys = list(zip(raw["encoder"], raw["task"]))
    unknown = sorted({k for k in keys if len(zs.get(k, ())) != 1})
    if unknown:
        raise InvalidInput(f"outcomes.csv: cannot recover the zero-shot accuracy of {len(unknown)} (encoder, task) "
                           f"pair(s), first {unknown[0]}; add the n_test/correct_zs/correct_ft columns")
    out["acc_zs"] = [next(iter(zs[k])) for k in keys]
    accuracies = {}
    for t, a, g in zip(out["task"], out["acc_zs"], out["id_gain"]):
        accuracies.setdefault(t, []).extend([a, a + g])
    n_test = {t: math.lcm(*(a.denominator for a in v)) for t, v in accuracies.items()}
    ood_den = {t: math.lcm(*(d.denominator for d in g)) for t, g in out.groupby("task")["ood_change"]}
    out["n_test"] = out["task"].map(n_test)
    out["correct_zs"] = [int(a * n) for a, n in zip(out["acc_zs"], out["n_test"])]
    out["correct_ft"] = [int((a + g) * n) for a, g, n in zip(out["acc_zs"], out["id_gain"], out["n_test"])]
    out["ood_den"] = out["task"].map(ood_den)
    out["ood_num"] = [int(d * m) for d, m in zip(out["ood_change"], out["ood_den"])]
    return _exact_outcomes(out.astype({c: float for c in EXACT}).assign(
        **{c: raw[c] for c in ("id_gain", "id_gain_norm", "ood_change")}))


def completeness(collected: dict) -> list[str]:
    """What is missing for a full grid over the encoders, tasks, methods and seeds present."""
    scores, outcomes, not_scored = collected["scores"], collected["outcomes"], collected["not_scored"]
    grid = set(zip(scores["encoder"], scores["task"])) | set(zip(not_scored["encoder"], not_scored["task"]))
    missing = [] if grid else [NO_SCORES]
    if outcomes.empty:
        return missing + [NO_OUTCOMES]
    methods, seeds = sorted(set(outcomes["method"])), sorted(set(outcomes["seed"]))
    have = set(zip(outcomes["encoder"], outcomes["task"], outcomes["method"], outcomes["seed"]))
    absent = [(e, t, m, s) for e, t in sorted(grid) for m in methods for s in seeds if (e, t, m, s) not in have]
    if absent:
        missing.append(f"{len(absent)} of {len(grid) * len(methods) * len(seeds)} fine-tuning cells")
    no_scores = {(e, t) for e, t, *_ in have} - grid
    if no_scores:
        missing.append(f"{len(no_scores)} (encoder, task) score cells")
    return missing


def coverage(collected: dict, registered: list[str], pool_relative: set[str]) -> pd.DataFrame:
    """One row per estimator (registered or scored): ``estimator, scored, cells, not_scored`` (why not,
    with counts: skipped and failed reasons from the cells, pool-relative ones on a 1-encoder board,
    cells with neither a score nor a reason)."""
    scores, not_scored = collected["scores"], collected["not_scored"]
    grid = set(zip(scores["encoder"], scores["task"])) | set(zip(not_scored["encoder"], not_scored["task"]))
    n_encoders = len({e for e, _ in grid})
    rows = []
    for name in sorted(set(registered) | set(scores["estimator"])):
        scored = set(zip(*(scores.loc[scores["estimator"] == name, c] for c in ("encoder", "task"))))
        mine = not_scored[not_scored["estimator"] == name]
        reasons = [f"{status} on {len(g)} of {len(grid)} cells: {reason}" for (status, reason), g in
                   sorted(mine.groupby(["status", "reason"]), key=lambda item: (-len(item[1]), item[0]))]
        silent = len(grid) - len(scored) - len(set(zip(mine["encoder"], mine["task"])) - scored)
        if silent and name in pool_relative and n_encoders < 2:
            reasons.append(f"pool-relative: needs >= 2 encoders (this board has {n_encoders})")
        elif silent:
            reasons.append(f"not run on {silent} of {len(grid)} cells (no score or reason recorded)")
        rows.append({"estimator": name, "scored": len(scored), "cells": len(grid), "not_scored": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=["estimator", "scored", "cells", "not_scored"])
