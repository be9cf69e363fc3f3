"""Render the ``models`` protocol (model selection): a markdown section and its CSVs, from the frames of
``benchmark.evaluation.models_protocol.select_models`` (``per_task``, ``summary``, ``pooled``, ``skipped``, ``design``).

Its prose is generated from those numbers: the static ranker's mean, which rows beat it, whether the
top of a table can be told apart, and the null band of a random score at the zoo's size.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from encoders.cache import atomic_write_bytes

STATIC = "other_tasks_acc"  # benchmark.evaluation.models_protocol.STATIC: the row every other row is compared with
FILES = ("selection", "selection_summary", "selection_pooled", "selection_skipped")


def _f(x, digits=2, sign="+") -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:{sign}.{digits}f}"


def _ci(lo, hi, digits=2) -> str:
    return "-" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _table(body, headers) -> str:
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _label(method: str) -> str:
    return f"method `{method}`" if method else "the accuracies given"


def write_csvs(out: Path, selection) -> None:
    """``selection.csv`` (per task), ``selection_summary.csv`` (means with intervals),
    ``selection_pooled.csv`` (when the pooled view was asked for) and ``selection_skipped.csv``.
    Without methods (a published table without a ``method`` column) the column is left out."""
    frames = dict(zip(FILES, (selection.per_task, selection.summary, selection.pooled, selection.skipped)))
    for name, frame in frames.items():
        if name == "selection_pooled" and frame.empty:
            continue
        if "method" in frame.columns and (frame["method"] == "").all():
            frame = frame.drop(columns="method")
        atomic_write_bytes(Path(out) / f"{name}.csv", frame.to_csv(index=False, float_format="%.10g").encode())


def section(selection, level: str = "##") -> list[str]:
    """Markdown lines of the ``models`` protocol: how to read it, then per method a ranking, the
    generated findings and the per-task weighted tau; the pooled view; what was skipped."""
    design, summary = selection.design, selection.summary
    if selection.per_task.empty:
        reasons = sorted(set(selection.skipped["reason"]))
        return [f"{level} Model selection (`models` protocol)", "",
                f"Not evaluated: no task has a ranking of at least 3 models ({'; '.join(reasons) or 'no accuracies'}).",
                ""]
    band = design["null_band"]
    sizes = ", ".join(f"{n} models: {q:.2f}" for n, q in sorted(band.items()))
    lines = [
        f"{level} Model selection (`models` protocol): which model fine-tunes best on a task?", "",
        f"Per task, the models are ranked by score (in the estimator's declared direction) against their fine-tuned "
        f"accuracy: {len(design['tasks'])} tasks from {len(design['datasets'])} datasets, "
        f"{len(design['models'])} models ({', '.join(design['models'])}).", "",
        "- **wτ**: weighted Kendall τ (`scipy.stats.weightedtau` defaults: hyperbolic weights, so the top of the "
        "ranking counts most; the LogME / SFDA convention), mean over tasks; **[95%]**: percentile interval over "
        f"{design['n_boot']:,} bootstrap resamples of the datasets (class-subset tasks go with their dataset).",
        "- **rank band**: 2.5–97.5% range of the row's rank over those resamples; **LOMO ranks**: its best and worst "
        "rank when one model is left out of every task.",
        "- **τ-b**, **r**: Kendall τ-b and Pearson r, means. **rel@1**: accuracy of the top-scored model over the "
        "best accuracy; **regret@1**: the best accuracy minus it (in the accuracies' own unit), means.",
        f"- **p<0.05**: tasks where the one-sided permutation p-value of wτ is below 0.05 (exact over every ordering "
        f"up to 8 models, else {design['draws']:,} random orderings).",
        f"- **vs static**: mean paired difference of wτ to `{STATIC}` (a model's mean accuracy on the tasks of the "
        "other datasets: knowing nothing about the target) [95%]; above 0 beats it.",
        f"- **Null band**: the chance that a random score reaches wτ ≥ {design['threshold']} on a task, by the zoo "
        f"size at hand ({sizes}).", ""]
    for method, block in summary.groupby("method", sort=True):
        lines += [f"{level}# {_label(method).capitalize()}", "", _ranking(block), "", *_findings(block, design), "",
                  _per_task(selection.per_task[selection.per_task["method"] == method]), ""]
    lines += _across_methods(summary)
    if not selection.pooled.empty:
        lines += [f"{level}# Pooled view: one correlation over all (model, task) cells", "",
                  "Spearman correlation of score (oriented) and fine-tuned accuracy over every (model, task) cell "
                  "of a method, with the same dataset bootstrap (Pearson r too in selection_pooled.csv). It mixes "
                  "the model axis with the task axis (a score "
                  "that only tells easy tasks from hard ones scores well here), so read it beside the per-task "
                  "tables.", "", _pooled(selection.pooled), ""]
    if not selection.skipped.empty:
        reasons = selection.skipped.groupby("reason", sort=True).size()
        lines += ["Skipped: " + "; ".join(f"{reason} ({count}×)" for reason, count in reasons.items())
                  + " (`selection_skipped.csv`).", ""]
    return lines


def _across_methods(summary: pd.DataFrame) -> list[str]:
    """How many comparisons with the static ranker the board makes, and how many chance would win."""
    if summary["method"].nunique() < 2:
        return []
    compared = summary[(summary["estimator"] != STATIC) & summary["vs_static"].astype(float).notna()]
    if compared.empty:
        return []
    above = compared[compared["vs_static_lo"] > 0]
    return [f"Across the {summary['method'].nunique()} methods, {len(above)} of the {len(compared)} comparisons with "
            f"`{STATIC}` {'has' if len(above) == 1 else 'have'} an interval above 0"
            + (" (" + ", ".join(f"`{r.estimator}` on `{r.method}`" for r in above.itertuples()) + ")"
               if len(above) else "")
            + f"; with no real difference about {len(compared) / 40:.1f} would (each interval misses above with "
              f"2.5% chance), so read a lone one as noise unless it recurs on other boards.", ""]


def _ranking(block: pd.DataFrame) -> str:
    rows = []
    for r in block.itertuples():
        name = (f"**{r.estimator}**" if r.estimator == STATIC else r.estimator) + (" (baseline)" if r.baseline else "")
        versus = "-" if not np.isfinite(r.vs_static) else f"{r.vs_static:+.2f} {_ci(r.vs_static_lo, r.vs_static_hi)}"
        rows.append([r.rank, name, f"{_f(r.weighted_tau)} {_ci(r.weighted_tau_lo, r.weighted_tau_hi)}",
                     _band(r.rank_lo, r.rank_hi), _band(r.lomo_rank_min, r.lomo_rank_max), _f(r.kendall_tau),
                     _f(r.pearson), _f(r.rel_at_1, 3, ""), _f(r.regret_at_1, 2, ""),
                     f"{r.significant}/{r.tasks}", versus])
    return _table(rows, ["#", "row", "wτ [95%]", "rank band", "LOMO ranks", "τ-b", "r", "rel@1", "regret@1",
                         "p<0.05", "vs static [95%]"])


def _band(lo, hi) -> str:
    return "-" if not (np.isfinite(lo) and np.isfinite(hi)) else f"{int(lo)}–{int(hi)}"


def _findings(block: pd.DataFrame, design: dict) -> list[str]:
    """Sentences generated from the numbers of one method's ranking."""
    out = []
    rows = block.set_index("estimator")
    if STATIC in rows.index:
        s = rows.loc[STATIC]
        out.append(f"The static ranker `{STATIC}` reaches mean wτ {_f(s.weighted_tau)} "
                   f"{_ci(s.weighted_tau_lo, s.weighted_tau_hi)} over {s.tasks} tasks.")
        beat = rows[(rows["vs_static_lo"] > 0) & (rows.index != STATIC)]
        lose = rows[(rows["vs_static_hi"] < 0) & (rows.index != STATIC)]
        others = rows[(rows.index != STATIC) & np.isfinite(rows["vs_static"])]
        if len(beat):
            out.append("Beating it (interval of the difference above 0): "
                       + ", ".join(f"`{n}` ({r.vs_static:+.2f} {_ci(r.vs_static_lo, r.vs_static_hi)})"
                                   for n, r in beat.iterrows()) + ".")
        elif len(others):
            out.append(f"No other row beats it: no interval of the difference lies above 0 "
                       f"({len(lose)} of {len(others)} lie below 0).")
    top = block.iloc[0]
    tied = block[(block["rank_lo"] <= top.rank_hi) & (block["estimator"] != top.estimator)]
    if len(block) > 1:
        if len(tied):
            names = [f"`{n}`" for n in tied["estimator"]]
            listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            out.append(f"The top row `{top.estimator}` (rank band {_band(top.rank_lo, top.rank_hi)}) cannot be told "
                       f"apart from {len(tied)} of the other {len(block) - 1} rows, whose rank bands overlap it: "
                       f"{listed}.")
        else:
            out.append(f"The top row `{top.estimator}` is separated from the rest (its rank band "
                       f"{_band(top.rank_lo, top.rank_hi)} overlaps no other).")
    sizes = sorted(design["null_band"])
    small = [n for n in sizes if design["null_band"][n] >= 0.1]
    if small:
        n = small[0]
        out.append(f"With {n} models per task a random score reaches wτ ≥ {design['threshold']} on "
                   f"{design['null_band'][n]:.0%} of tasks, so one task's ranking says little; only means over many "
                   f"tasks, with their intervals, do.")
    if block["significant"].max() == 0 and sizes and sizes[-1] <= 8:
        n = sizes[-1]
        out.append(f"No task's ranking is significant for any row: with {n} models the smallest exact permutation "
                   f"p is 1/{n}! = {1 / math.factorial(n):.2g}.")
    if not np.isfinite(block["lomo_rank_min"]).any():
        out.append("LOMO ranks are undefined: leaving one model out leaves fewer than 3 on every task.")
    return [" ".join(out)] if out else []


def _per_task(per_task: pd.DataFrame) -> str:
    """wτ per task (columns) and row; * marks a permutation p < 0.05."""
    tasks = sorted(per_task["task"].unique())
    cells = per_task.set_index(["estimator", "task"])
    order = per_task.groupby("estimator")["weighted_tau"].mean().sort_values(ascending=False, kind="stable").index
    body = []
    for name in order:
        row = [name]
        for t in tasks:
            if (name, t) not in cells.index:
                row.append("-")
                continue
            c = cells.loc[(name, t)]
            row.append(_f(c.weighted_tau) + ("*" if c.p_value < 0.05 else ""))
        body.append(row)
    n = per_task.drop_duplicates("task").set_index("task")["n_models"]
    best = per_task.drop_duplicates("task").set_index("task")["best_model"]
    return _table(body + [["(models)", *[str(int(n[t])) for t in tasks]], ["(best)", *[best[t] for t in tasks]]],
                  ["wτ per task", *tasks])


def _pooled(pooled: pd.DataFrame) -> str:
    """Spearman [95%] per row (rows) and method (columns), best mean first."""
    methods = sorted(pooled["method"].unique())
    cells = pooled.set_index(["estimator", "method"])
    order = pooled.groupby("estimator")["spearman"].mean().sort_values(ascending=False, kind="stable").index
    body = [[name + (" (baseline)" if cells.loc[name]["baseline"].iloc[0] else ""),
             *[f"{_f(c.spearman)} {_ci(c.spearman_lo, c.spearman_hi)}" if (name, m) in cells.index and
               np.isfinite((c := cells.loc[(name, m)]).spearman) else "-" for m in methods]] for name in order]
    cells_n = pooled.groupby("method")["cells"].max()
    return _table(body, ["Spearman [95%]", *[f"{m or 'accuracy'} ({cells_n[m]} cells)" for m in methods]])


def render_selection(out: Path, selection, title: str, source_lines: list[str]) -> Path:
    """A board of the ``models`` protocol alone (published accuracies): ``leaderboard.md`` and the CSVs."""
    out = Path(out)
    parts = [f"# {title}", "", *source_lines, "", *section(selection),
             "Every number is in selection.csv (per task), selection_summary.csv (means with intervals)"
             + (" and selection_pooled.csv" if not selection.pooled.empty else "") + ".", ""]
    write_csvs(out, selection)
    atomic_write_bytes(out / "leaderboard.md", "\n".join(parts).encode())
    return out / "leaderboard.md"
