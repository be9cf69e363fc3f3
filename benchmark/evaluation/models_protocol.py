"""The ``models`` protocol (model selection, the LogME / SFDA line): for each task, does an estimator
put the model that fine-tunes best on top? (tables in, tables out; no torch)

Inputs:

- ``accuracies``: ``task, model, method, accuracy``, the measured fine-tuned accuracy of each model
  (a published table, or the seed means of the harness's own outcome cells: ``grid_accuracies``);
- ``scores``: ``task, model, estimator, score`` (may be empty);
- ``attributes``: ``model`` plus numeric columns that do not depend on the target (parameter count,
  ImageNet accuracy), each ranked as a static baseline.

Per (method, task, estimator), over the task's models (at least ``MIN_MODELS``; fewer: skipped with the
reason), with the score taken in the estimator's declared direction (``benchmark.evaluation.rank_stats``):
weighted tau (``scipy.stats.weightedtau`` defaults), Kendall tau-b and Pearson r of score and
accuracy, rel@1 and regret@1 of the top-scored model, the one-sided permutation p-value of weighted
tau (exact up to 8 models, else Monte Carlo with its standard error) and the null band: the chance
that a random score reaches weighted tau >= 0.5 on that task.

Baselines, ranked as rows like the estimators: ``random`` (a seeded uniform score, unless the scores
carry the ``random`` estimator), ``other_tasks_acc`` (the static ranker of "Back to the Basics":
a model's mean accuracy, same method, over the tasks of *other datasets* than the target's, so the
target and its class-subset siblings are left out), every column of ``attributes``, and the
estimators flagged as baselines (``zero_shot_acc`` among them).

Aggregates, per (method, estimator): the mean of each statistic over tasks, with 95% percentile
intervals from a bootstrap that resamples datasets (``benchmark.evaluation.tasks_protocol.resample_weights``: class-
subset tasks go with their dataset); ``rank`` by mean weighted tau with its band over the resamples;
``lomo_rank_min/max``, the best and worst rank when one model is left out of every task; and
``vs_static``, the paired difference of mean weighted tau to ``other_tasks_acc`` on their common
tasks, with its interval: above 0, the estimator beats knowing nothing about the target.

``pooled``: one Spearman and Pearson correlation of score and fine-tuned accuracy over all (model,
task) cells of a method, with the same dataset bootstrap.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from benchmark.evaluation.rank_stats import MC_DRAWS, null_band, permutation_p, top1, weighted_tau
from benchmark.evaluation.tasks_protocol import (
    N_BOOT,
    _kendall,
    _pearson,
    _spearman,
    bootstrap_p,
    exact_mean,
    resample_weights,
    task_clusters,
)
from estimators import baselines as registered_baselines
from estimators.errors import InvalidInput

MIN_MODELS = 3
STATIC = "other_tasks_acc"
RANDOM = "random"
THRESHOLD = 0.5
SELECTION_COLUMNS = ["method", "estimator", "baseline", "higher_is_better", "task", "dataset", "n_models",
                     "constant", "weighted_tau", "kendall_tau", "pearson", "rel_at_1", "regret_at_1", "p_value",
                     "p_exact", "p_se", "null_wtau_half", "top_model", "best_model"]
_MEANS = ("weighted_tau", "kendall_tau", "pearson", "rel_at_1", "regret_at_1")
SUMMARY_COLUMNS = ["method", "estimator", "baseline", "higher_is_better", "tasks", "significant",
                   *[c for s in _MEANS for c in (s, f"{s}_lo", f"{s}_hi")],
                   "rank", "rank_lo", "rank_hi", "lomo_rank_min", "lomo_rank_max",
                   "vs_static", "vs_static_lo", "vs_static_hi", "vs_static_p", "vs_static_tasks"]
POOLED_COLUMNS = ["method", "estimator", "baseline", "higher_is_better", "cells", "models", "tasks",
                  "spearman", "spearman_lo", "spearman_hi", "pearson", "pearson_lo", "pearson_hi"]
SKIPPED_COLUMNS = ["method", "task", "estimator", "reason"]


@dataclass(frozen=True)
class Selection:
    """``per_task`` (``SELECTION_COLUMNS``), ``summary`` (``SUMMARY_COLUMNS``), ``pooled``
    (``POOLED_COLUMNS``, empty unless asked for), ``skipped`` (``SKIPPED_COLUMNS``) and ``design``."""

    per_task: pd.DataFrame
    summary: pd.DataFrame
    pooled: pd.DataFrame
    skipped: pd.DataFrame
    design: dict


def select_models(accuracies: pd.DataFrame, scores: pd.DataFrame | None = None,
                  directions: Mapping[str, bool] | None = None, *, attributes: pd.DataFrame | None = None,
                  clusters: Mapping[str, str] | None = None, baselines=None, n_boot: int = N_BOOT,
                  seed: int = 0, draws: int = MC_DRAWS, with_pooled: bool = False) -> Selection:
    """The ``models`` protocol on these tables (see the module docstring). ``directions``: estimator ->
    higher_is_better for the estimators in ``scores`` (every one needs an entry); ``clusters``: task ->
    dataset (default ``benchmark.evaluation.tasks_protocol.task_clusters``). Deterministic for the same
    inputs and seed."""
    acc = _accuracies(accuracies)
    scores = _scores(scores)
    directions = dict(directions or {})
    unknown = sorted(set(scores["estimator"]) - set(directions))
    if unknown:
        raise InvalidInput(f"no direction (higher_is_better) for estimator(s) {unknown}")
    tasks = sorted(acc["task"].unique())
    cluster_of = task_clusters(tasks, clusters)
    long = _with_baselines(acc, scores, attributes, cluster_of, seed)
    directions.update({n: True for n in long["estimator"].unique() if n not in directions})
    baseline_names = (set(registered_baselines() if baselines is None else baselines) | {STATIC, RANDOM}
                      | (set(attributes.columns) - {"model"} if attributes is not None else set()))

    rows, skipped, vectors = [], [], {}
    for method, by_method in acc.groupby("method", sort=True):
        for task, block in by_method.groupby("task", sort=True):
            if len(block) < MIN_MODELS:
                skipped.append({"method": method, "task": task, "estimator": "*",
                                "reason": f"{len(block)} model(s) with an accuracy; the protocol needs {MIN_MODELS}"})
                continue
            y_of = dict(zip(block["model"], block["accuracy"]))
            for name, est in long[long["task"] == task].groupby("estimator", sort=True):
                est = est[est["model"].isin(y_of) & (est["method"].isin([method, ""]))]
                if len(est) < MIN_MODELS:
                    skipped.append({"method": method, "task": task, "estimator": name,
                                    "reason": f"scores for {len(est)} of the {len(y_of)} models"})
                    continue
                models = est["model"].to_numpy()
                x = (1 if directions[name] else -1) * est["score"].to_numpy(dtype=float)
                y = np.array([y_of[m] for m in models], dtype=float)
                vectors[(method, name, task)] = (models, x, y)
                rows.append({"method": method, "estimator": name, "task": task, "dataset": cluster_of[task],
                             **task_statistics(models, x, y, draws)})
    per_task = pd.DataFrame(rows, columns=SELECTION_COLUMNS)
    per_task["baseline"] = per_task["estimator"].isin(baseline_names)
    per_task["higher_is_better"] = per_task["estimator"].map(directions).astype(bool)
    per_task = per_task.sort_values(["method", "estimator", "task"], ignore_index=True)
    weights, datasets = resample_weights(tasks, cluster_of, n_boot, seed)
    summary = _summarise(per_task, vectors, weights, {t: i for i, t in enumerate(tasks)}, len(datasets))
    pooled = (_pooled(vectors, per_task, weights, {t: i for i, t in enumerate(tasks)}, len(datasets))
              if with_pooled else pd.DataFrame(columns=POOLED_COLUMNS))
    sizes = sorted({int(n) for n in per_task["n_models"]})
    design = {"tasks": tasks, "datasets": {d: [t for t in tasks if cluster_of[t] == d] for d in datasets},
              "models": sorted(acc["model"].unique()), "methods": sorted(acc["method"].unique()),
              "n_boot": n_boot, "draws": draws, "threshold": THRESHOLD,
              "null_band": {n: null_band(np.arange(n), THRESHOLD, draws) for n in sizes}}
    return Selection(per_task, summary, pooled,
                     pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).sort_values(SKIPPED_COLUMNS, ignore_index=True),
                     design)


def task_statistics(models: np.ndarray, x: np.ndarray, y: np.ndarray, draws: int = MC_DRAWS) -> dict:
    """The per-task row for oriented scores ``x`` and accuracies ``y`` of ``models``; a constant score
    or accuracy gives every correlation 0 and ``constant=True`` (no p-value)."""
    constant = bool(np.ptp(x) == 0 or np.ptp(y) == 0)
    rel, regret = top1(x, y)
    p, exact, se = permutation_p(x, y, draws)
    out = {"n_models": len(x), "constant": constant, "rel_at_1": rel, "regret_at_1": regret,
           "p_value": p, "p_exact": exact, "p_se": se, "null_wtau_half": null_band(y, THRESHOLD, draws),
           "top_model": ",".join(sorted(models[x == x.max()])), "best_model": ",".join(sorted(models[y == y.max()]))}
    if constant:
        return {**out, "weighted_tau": 0.0, "kendall_tau": 0.0, "pearson": 0.0}
    w = np.ones((1, len(x)))
    return {**out, "weighted_tau": weighted_tau(x, y), "kendall_tau": float(_kendall(x, y, w)[0]),
            "pearson": float(_pearson(x, y, w)[0])}


def grid_accuracies(outcomes: pd.DataFrame) -> pd.DataFrame:
    """``task, model, method, accuracy`` from the harness's outcome table (per encoder x method x task x
    seed): the exact seed mean of the fine-tuned accuracy, ``correct_ft / n_test`` where the counts are
    there, else ``acc_zs + id_gain`` (a board folder written before the counts were kept)."""
    if {"correct_ft", "n_test"} <= set(outcomes.columns):
        acc_ft = [Fraction(int(c), int(n)) for c, n in zip(outcomes["correct_ft"], outcomes["n_test"])]
    else:
        acc_ft = [Fraction(a) + Fraction(g) for a, g in zip(outcomes["acc_zs"], outcomes["id_gain"])]
    means = outcomes.assign(acc_ft=acc_ft).groupby(["encoder", "method", "task"], sort=True)["acc_ft"]
    means = means.agg(exact_mean).reset_index()
    return means.rename(columns={"encoder": "model", "acc_ft": "accuracy"})[["task", "model", "method", "accuracy"]]


def directions_of(names, given: Mapping[str, bool] | None = None) -> dict[str, bool]:
    """``higher_is_better`` per estimator: ``given`` first, else the registry's declaration, else True
    (an unknown name, e.g. a column of published scores, counts as higher-is-better)."""
    from estimators import ESTIMATORS

    given = dict(given or {})
    known = set(ESTIMATORS.names("*"))
    return {n: bool(given[n]) if n in given else
            bool(ESTIMATORS.get(n).higher_is_better) if n in known else True for n in names}


def read_table(path, kind: str) -> pd.DataFrame:
    """A CSV file of the protocol's inputs (``accuracies``, ``scores``, ``models``); InvalidInput (one
    line) when it is missing or unreadable. The columns are checked by ``select_models``."""
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"task": str, "model": str,
                                                                              "estimator": str, "method": str})
    except (OSError, ValueError) as err:
        raise InvalidInput(f"cannot read the {kind} file {path}: {err}") from None
    if frame.empty:
        raise InvalidInput(f"the {kind} file {path} has no rows")
    return frame


def split_directions(scores: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, bool]]:
    """Scores without their optional ``higher_is_better`` column, and the directions it gives
    (``true/false/1/0``, one value per estimator)."""
    if "higher_is_better" not in scores.columns:
        return scores, {}
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    flags = scores["higher_is_better"].map(lambda v: words.get(str(v).strip().lower()))
    if flags.isna().any():
        bad = scores.loc[flags.isna(), "higher_is_better"].iloc[0]
        raise InvalidInput(f"scores: higher_is_better {bad!r} is not true or false")
    per = pd.DataFrame({"estimator": scores["estimator"].astype(str), "flag": flags}).drop_duplicates()
    conflicting = per[per["estimator"].duplicated()]["estimator"]
    if len(conflicting):
        raise InvalidInput(f"scores: estimator {conflicting.iloc[0]!r} has both higher_is_better true and false")
    return scores.drop(columns="higher_is_better"), dict(zip(per["estimator"], per["flag"].astype(bool)))


def checked_attributes(models: pd.DataFrame) -> pd.DataFrame:
    """``model`` plus numeric attribute columns (empty cells allowed: unknown); InvalidInput otherwise."""
    if "model" not in models.columns:
        raise InvalidInput(f"models is missing the column 'model'; it has {list(models.columns)}")
    if models["model"].duplicated().any():
        raise InvalidInput(f"models lists {models.loc[models['model'].duplicated(), 'model'].iloc[0]!r} twice")
    out = models.assign(model=models["model"].astype(str))
    for column in out.columns.drop("model"):
        numbers = pd.to_numeric(out[column], errors="coerce")
        if (numbers.isna() & out[column].notna()).any():
            raise InvalidInput(f"models: column {column!r} is not numeric")
        out[column] = numbers.astype(float)
    return out


# -- baselines ----------------------------------------------------------------------------------
def _with_baselines(acc: pd.DataFrame, scores: pd.DataFrame, attributes: pd.DataFrame | None,
                    cluster_of: dict, seed: int) -> pd.DataFrame:
    """Scores (method "" = every method) plus the baselines' scores, one frame."""
    parts = [scores.assign(method="")]
    static = []
    for method, block in acc.groupby("method", sort=True):
        table = block.pivot(index="model", columns="task", values="accuracy")
        for task in table.columns:
            others = [t for t in table.columns if cluster_of[t] != cluster_of[task]]
            means = table[others].mean(axis=1) if others else pd.Series(np.nan, index=table.index)
            static += [(task, m, method, STATIC, v) for m, v in means.items() if np.isfinite(v)]
    parts.append(pd.DataFrame(static, columns=["task", "model", "method", "estimator", "score"]))
    pairs = acc[["task", "model"]].drop_duplicates()
    if RANDOM not in set(scores["estimator"]):
        draws = [np.random.default_rng([seed, zlib.crc32(f"{t}\x1e{m}".encode())]).random()
                 for t, m in zip(pairs["task"], pairs["model"])]
        parts.append(pairs.assign(method="", estimator=RANDOM, score=draws))
    if attributes is not None:
        for column in attributes.columns.drop("model"):
            known = attributes[["model", column]].dropna()
            merged = pairs.merge(known, on="model")
            parts.append(pd.DataFrame({"task": merged["task"], "model": merged["model"], "method": "",
                                       "estimator": column, "score": merged[column].astype(float)}))
    return pd.concat(parts, ignore_index=True).sort_values(["estimator", "task", "model"], ignore_index=True)


# -- aggregates ---------------------------------------------------------------------------------
def _weighted_means(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per row of task weights ``w`` (R, T), the weighted mean of ``values`` (T,) over its finite entries."""
    finite = np.isfinite(values)
    total = w[:, finite].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w[:, finite] @ values[finite] / total, np.nan)


def _interval(resampled: np.ndarray, k: int) -> tuple[float, float]:
    boot = resampled[1 + k:]
    boot = boot[np.isfinite(boot)]
    return tuple(np.percentile(boot, [2.5, 97.5])) if len(boot) else (np.nan, np.nan)


def _summarise(per_task: pd.DataFrame, vectors: dict, weights: np.ndarray, column: dict, k: int) -> pd.DataFrame:
    rows = []
    for method, block in per_task.groupby("method", sort=True):
        names = sorted(block["estimator"].unique())
        resampled = {}
        for name in names:
            own = block[block["estimator"] == name]
            stats = {}
            for s in _MEANS:
                values = np.full(weights.shape[1], np.nan)
                values[[column[t] for t in own["task"]]] = own[s].to_numpy(dtype=float)
                stats[s] = _weighted_means(values, weights)
            resampled[name] = stats
            rows.append({"method": method, "estimator": name, "baseline": bool(own["baseline"].iloc[0]),
                         "higher_is_better": bool(own["higher_is_better"].iloc[0]), "tasks": len(own),
                         "significant": int((own["p_value"] < 0.05).sum()),
                         **{c: v for s in _MEANS for c, v in zip((s, f"{s}_lo", f"{s}_hi"),
                                                                 (stats[s][0], *_interval(stats[s], k)))}})
        wtau = np.array([resampled[n]["weighted_tau"] for n in names])  # (E, R)
        ranks = 1 + (np.nan_to_num(wtau, nan=-np.inf)[None, :, :] > np.nan_to_num(wtau, nan=-np.inf)[:, None, :]).sum(1)
        lomo = _lomo_ranks(method, names, vectors)
        static = resampled.get(STATIC, {}).get("weighted_tau")
        static_tasks = set(block.loc[block["estimator"] == STATIC, "task"])
        for i, name in enumerate(names):
            row = next(r for r in rows if r["method"] == method and r["estimator"] == name)
            boot = ranks[i, 1 + k:]
            row.update(rank=int(ranks[i, 0]), rank_lo=np.percentile(boot, 2.5, method="lower") if len(boot) else np.nan,
                       rank_hi=np.percentile(boot, 97.5, method="higher") if len(boot) else np.nan,
                       lomo_rank_min=lomo[name][0], lomo_rank_max=lomo[name][1])
            if static is not None and name != STATIC:
                diff = _paired_difference(block, name, static_tasks, weights, column)
                if diff is not None:
                    row.update(vs_static=diff[0], vs_static_tasks=diff[1], vs_static_p=bootstrap_p(diff[2][1 + k:]))
                    row["vs_static_lo"], row["vs_static_hi"] = _interval(diff[2], k)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return summary.sort_values(["method", "rank", "estimator"], ignore_index=True)


def _paired_difference(block: pd.DataFrame, name: str, static_tasks: set, weights: np.ndarray, column: dict):
    """(point, common tasks, resampled) mean weighted tau of ``name`` minus the static ranker's on
    their common tasks; None without common tasks."""
    own = block[(block["estimator"] == name) & block["task"].isin(static_tasks)]
    if own.empty:
        return None
    ref = block[block["estimator"] == STATIC].set_index("task")["weighted_tau"]
    values = np.full(weights.shape[1], np.nan)
    values[[column[t] for t in own["task"]]] = own["weighted_tau"].to_numpy() - ref.loc[own["task"]].to_numpy()
    resampled = _weighted_means(values, weights)
    return resampled[0], len(own), resampled


def _lomo_ranks(method: str, names: list[str], vectors: dict) -> dict:
    """Per estimator, the best and worst rank by mean weighted tau when one model is left out of
    every task (tasks left with fewer than MIN_MODELS models drop out; NaN when every task does)."""
    models = sorted({m for (me, _, _), (ms, _, _) in vectors.items() if me == method for m in ms})
    ranks = {name: [] for name in names}
    for left_out in models:
        means = {}
        for name in names:
            taus = [weighted_tau(x[keep], y[keep]) for (me, n, _), (ms, x, y) in vectors.items()
                    if me == method and n == name for keep in [ms != left_out] if keep.sum() >= MIN_MODELS]
            taus = [0.0 if not np.isfinite(t) else t for t in taus]
            means[name] = np.mean(taus) if taus else -np.inf
        if all(m == -np.inf for m in means.values()):
            continue  # too few models left on every task: this left-out model says nothing
        for name in names:
            ranks[name].append(1 + sum(means[o] > means[name] for o in names))
    return {name: (min(r), max(r)) if r else (np.nan, np.nan) for name, r in ranks.items()}


def _pooled(vectors: dict, per_task: pd.DataFrame, weights: np.ndarray, column: dict, k: int) -> pd.DataFrame:
    """One correlation over all (model, task) cells of a method, per estimator, with the dataset bootstrap."""
    flags = per_task.drop_duplicates(["method", "estimator"]).set_index(["method", "estimator"])
    rows = []
    for method, name in sorted({(me, n) for me, n, _ in vectors}):
        cells = [(t, m, xv, yv) for (me, n, t), (ms, x, y) in vectors.items() if me == method and n == name
                 for m, xv, yv in zip(ms, x, y)]
        x = np.array([c[2] for c in cells])
        y = np.array([c[3] for c in cells])
        w = weights[:, [column[c[0]] for c in cells]]
        row = {"method": method, "estimator": name, "baseline": flags.loc[(method, name), "baseline"],
               "higher_is_better": flags.loc[(method, name), "higher_is_better"], "cells": len(cells),
               "models": len({c[1] for c in cells}), "tasks": len({c[0] for c in cells})}
        for stat, f in (("spearman", _spearman), ("pearson", _pearson)):
            r = f(x, y, w)
            row[stat] = r[0]
            row[f"{stat}_lo"], row[f"{stat}_hi"] = _interval(r, k)
        rows.append(row)
    return pd.DataFrame(rows, columns=POOLED_COLUMNS)


# -- input checks -------------------------------------------------------------------------------
def _accuracies(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("task", "model", "accuracy") if c not in df.columns]
    if missing:
        raise InvalidInput(f"accuracies is missing column(s) {missing}; expected task,model,accuracy "
                           f"(and optionally method); it has {list(df.columns)}")
    if "method" not in df.columns:
        df = df.assign(method="")
    return _checked(df, "accuracies", ["task", "model", "method"], "accuracy")


def _scores(df: pd.DataFrame | None) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame({"task": pd.Series(dtype=str), "model": pd.Series(dtype=str),
                             "estimator": pd.Series(dtype=str), "score": pd.Series(dtype=float)})
    return _checked(df, "scores", ["task", "model", "estimator"], "score")


def _checked(df: pd.DataFrame, name: str, keys: list[str], value: str) -> pd.DataFrame:
    """Keys as strings, the value as a finite float, no duplicate keys; else InvalidInput naming the first."""
    missing = [c for c in (*keys, value) if c not in df.columns]
    if missing:
        raise InvalidInput(f"{name} is missing column(s) {missing}; expected {[*keys, value]}")
    df = df[[*keys, value]].copy()
    if df[keys].isna().any().any():
        raise InvalidInput(f"{name} has an empty value in a key column ({', '.join(keys)})")
    df[keys] = df[keys].astype(str)
    numbers = pd.to_numeric(df[value].map(lambda v: float(v) if isinstance(v, Fraction) else v), errors="coerce")
    bad = ~np.isfinite(numbers.to_numpy(dtype=float))
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise InvalidInput(f"{name}: {value} {first[value]!r} is not a finite number "
                           f"({', '.join(f'{k}={first[k]}' for k in keys)})")
    df[value] = numbers.astype(float)
    dup = df.duplicated(keys)
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise InvalidInput(f"{name} has {int(dup.sum())} duplicate row(s), first "
                           f"({', '.join(f'{k}={first[k]}' for k in keys)})")
    return df
