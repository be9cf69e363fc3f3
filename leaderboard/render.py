"""Render the leaderboard: a markdown page, CSVs of every number and scatter plots.

Same results in, byte-identical files out: no wall-clock time is written (the date is the
newest result's), tables are sorted, the bootstrap is seeded, and PNGs carry no metadata.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.evaluate import BASELINES, OUTCOMES, REFERENCE, evaluate
from encoders.cache import atomic_write_bytes

from .tables import collect, completeness

TITLES = {"id_gain_norm": "In-domain gain over zero-shot error (id_gain_norm)",
          "id_gain": "In-domain gain (id_gain = acc_ft - acc_zs on the target)",
          "ood_change": "Out-of-domain change (ood_change = mean acc_ft - acc_zs on the tasks of other datasets)"}
RANK_BY = "id_gain_norm"


def _fmt(x, digits=3) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _interval(lo, hi) -> str:
    return "-" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:.2f}, {hi:.2f}]"


def ranking(stats: pd.DataFrame, outcome: str, seconds: pd.Series) -> pd.DataFrame:
    """Per estimator: means over the (method, encoder) groups of one outcome, ranked by LOTO R^2."""
    rows = stats[(stats["group_kind"] == "encoder") & (stats["outcome"] == outcome)]
    up = rows["higher_is_better"].to_numpy()  # the interval of the direction-adjusted r
    rows = rows.assign(pearson_boot_lo=np.where(up, rows["pearson_boot_lo"], -rows["pearson_boot_hi"]),
                       pearson_boot_hi=np.where(up, rows["pearson_boot_hi"], -rows["pearson_boot_lo"]))
    numeric = ["loto_r2", "loto_mae", "pearson_signed", "pearson_boot_lo", "pearson_boot_hi", "spearman_signed",
               "kendall_signed", "wtau_signed", "r2", "ref_diff", "ref_diff_lo", "ref_diff_hi"]
    table = rows.groupby("estimator")[numeric].mean()
    table["groups"] = rows.groupby("estimator")["n"].size()
    table["constant"] = rows.groupby("estimator")["constant"].sum()
    table["ref_wins"] = rows.assign(w=(rows["ref_p_holm"] < 0.05) & (rows["ref_diff"] > 0)).groupby("estimator")["w"].sum()
    table["ref_losses"] = rows.assign(w=(rows["ref_p_holm"] < 0.05) & (rows["ref_diff"] < 0)).groupby("estimator")["w"].sum()
    table["seconds"] = seconds.reindex(table.index)
    table = table.reset_index().sort_values(["loto_r2", "estimator"], ascending=[False, True], na_position="last")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def _ranking_markdown(table: pd.DataFrame) -> str:
    rows = []
    for r in table.itertuples():
        name = f"**{r.estimator}**" if r.estimator == REFERENCE else r.estimator
        versus = "-" if r.estimator == REFERENCE or not np.isfinite(r.ref_diff) else \
            f"{r.ref_diff:+.2f} {_interval(r.ref_diff_lo, r.ref_diff_hi)} ({int(r.ref_wins)}↑ {int(r.ref_losses)}↓)"
        rows.append([r.rank, name + (" (baseline)" if r.estimator in BASELINES else ""), _fmt(r.loto_r2),
                     _fmt(r.loto_mae), f"{_fmt(r.pearson_signed, 2)} {_interval(r.pearson_boot_lo, r.pearson_boot_hi)}",
                     _fmt(r.spearman_signed, 2), _fmt(r.kendall_signed, 2), _fmt(r.wtau_signed, 2), _fmt(r.r2, 2),
                     versus, int(r.constant), _fmt(r.seconds, 4)])
    headers = ["#", "estimator", "LOTO R²", "LOTO MAE", "Pearson r [boot 95%]", "Spearman", "Kendall τ-b",
               "weighted τ", "R²", f"Δρ vs {REFERENCE} [95%] (Holm-sig. ↑/↓)", "const.", "s / cell"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _breakdown(stats: pd.DataFrame, by: str, value: str) -> str:
    rows = stats[(stats["group_kind"] == "encoder") & (stats["outcome"] == RANK_BY)]
    pivot = rows.groupby(["estimator", by])[value].mean().unstack(by).sort_index()
    body = [[e] + [_fmt(v, 2) for v in row] for e, row in zip(pivot.index, pivot.to_numpy())]
    return tabulate(body, headers=["estimator", *pivot.columns], tablefmt="github", disable_numparse=True)


def _outcome_summary(outcomes: pd.DataFrame) -> str:
    body = []
    for method, g in outcomes.groupby("method"):
        cells = [f"{g[o].mean():+.3f} [{g[o].min():+.2f}, {g[o].max():+.2f}]" for o in ("id_gain", "ood_change")]
        body.append([method, cells[0], f"{int((g['id_gain'] > 0).sum())}/{len(g)}", cells[1],
                     f"{int((g['ood_change'] < 0).sum())}/{len(g)}"])
    return tabulate(body, headers=["method", "id_gain mean [min, max]", "cells with id_gain > 0",
                                   "ood_change mean [min, max]", "cells with ood_change < 0"],
                    tablefmt="github", disable_numparse=True)


def _provenance(collected: dict, suite: str | None) -> str:
    cells, outcome_cells = collected["score_cells"], collected["outcome_cells"]
    outcomes = collected["outcomes"]
    versions = {}
    for r in cells + outcome_cells:
        versions.update(r.get("versions", {}))
    dates = sorted(r.get("date", "") for r in cells + outcome_cells)
    n_train = sorted({r["n_train"] for r in cells})
    lines = [f"- suite: `{suite or 'unknown'}`",
             f"- encoders: {', '.join(sorted({r['encoder'] for r in cells}))}",
             f"- tasks: {', '.join(sorted({r['task'] for r in cells}))}",
             f"- methods: {', '.join(sorted(set(outcomes['method']))) or '-'}",
             f"- seeds: {', '.join(map(str, sorted(set(outcomes['seed'])))) or '-'}",
             f"- n: {len(cells)} score cells (train sample {n_train}), {len(outcome_cells)} fine-tuning cells",
             f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(versions.items())) or '-'}",
             f"- newest result: {dates[-1] if dates else '-'}"]
    return "\n".join(lines)


def scatter_png(collected: dict, outcome: str) -> bytes:
    """One panel per estimator: score vs seed-averaged delta, coloured by encoder, least-squares line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = collected["outcomes"].groupby(["encoder", "method", "task"], as_index=False)[outcome].mean()
    data = collected["scores"].merge(outcomes, on=["encoder", "task"])
    names = sorted(set(data["estimator"]))
    encoders = sorted(set(data["encoder"]))
    colours = dict(zip(encoders, plt.get_cmap("tab10").colors))
    cols = 5
    fig, axes = plt.subplots(int(np.ceil(len(names) / cols)), cols, figsize=(3.2 * cols, 2.7 * np.ceil(len(names) / cols)),
                             squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        d = data[data["estimator"] == name]
        for e in encoders:
            de = d[d["encoder"] == e]
            ax.scatter(de["score"], de[outcome], s=9, color=colours[e], label=e, alpha=0.75)
        if d["score"].nunique() > 1:
            slope, intercept = np.polyfit(d["score"], d[outcome], 1)
            xs = np.linspace(d["score"].min(), d["score"].max(), 2)
            ax.plot(xs, slope * xs + intercept, color="black", lw=1)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.supylabel(outcome)
    fig.supxlabel("zero-shot estimator score (one point per encoder x task x method, seeds averaged)")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.95, wspace=0.3, hspace=0.45)  # tight_layout: 1.5 s
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def build(results: Path, out: Path, suite: str | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Write ``leaderboard.md``, ``stats.csv``, ``scores.csv``, ``outcomes.csv`` and plots into ``out``."""
    collected = collect(results)
    missing = completeness(collected)
    suite = suite or ",".join(sorted({r["suite"] for r in collected["score_cells"] if "suite" in r})) or None
    out = Path(out)
    seconds = collected["seconds"].groupby("estimator")["seconds"].mean()
    parts = [f"# transferbench leaderboard — suite `{suite or 'unknown'}`", ""]
    if missing:
        parts += [f"> **PARTIAL** results: missing {'; '.join(missing)}. The tables cover what exists.", ""]
    stats = None
    if not collected["outcomes"].empty and not collected["scores"].empty:
        stats = evaluate(collected["scores"], collected["outcomes"], n_boot=n_boot, seed=seed)
        parts += [
            "Which zero-shot transferability estimator best predicts what fine-tuning does? Each estimator",
            "scores the zero-shot embeddings of a task's training sample; each fine-tuning cell measures the",
            "deltas. Per encoder, across tasks, we fit delta = a + b * score and predict every task from the",
            "others (**leave-one-task-out predictive R²**, the paper's practical use: predict the gain on a new",
            "task from a few fine-tuned ones). Rows are ranked by it; every column is the mean over the",
            "(method, encoder) groups. Correlations are direction-adjusted (an estimator declared",
            "lower-is-better is negated). Intervals: mean of the per-group 95% bootstrap intervals (tasks",
            f"resampled, {n_boot} draws). Δρ: Spearman difference to {REFERENCE} on the same resamples; ↑/↓ count",
            "the groups where it is significant after Holm correction.", ""]
        for outcome in (RANK_BY, "id_gain", "ood_change"):
            parts += [f"## {TITLES[outcome]}", "", _ranking_markdown(ranking(stats, outcome, seconds)), ""]
        parts += ["For `ood_change` the paper expects a *negative* correlation for IIMM (more gain, more "
                  "forgetting): there a large negative r is predictive too.", "",
                  f"## Per fine-tuning method (LOTO R² on {RANK_BY}, mean over encoders)", "",
                  _breakdown(stats, "method", "loto_r2"), "",
                  f"## Per encoder (signed Pearson r on {RANK_BY}, mean over methods)", "",
                  _breakdown(stats, "group", "pearson_signed"), "",
                  "## Measured fine-tuning outcomes (over encoders, tasks and seeds)", "",
                  _outcome_summary(collected["outcomes"]), ""]
        for outcome in OUTCOMES:
            atomic_write_bytes(out / "plots" / f"scatter_{outcome}.png", scatter_png(collected, outcome))
        parts += ["## Plots", ""] + [f"![{o}](plots/scatter_{o}.png)" for o in OUTCOMES] + [""]
        atomic_write_bytes(out / "stats.csv", stats.to_csv(index=False, float_format="%.10g").encode())
    parts += ["## Estimator run time (seconds per cell, mean)", "",
              tabulate([[k, _fmt(v, 4)] for k, v in seconds.sort_values().items()],
                       headers=["estimator", "seconds"], tablefmt="github", disable_numparse=True), "",
              "## Provenance", "", _provenance(collected, suite), "",
              "Notes: the source model of LEEP and NCE is the encoder's own zero-shot classifier over the "
              "task's class prompts, softmax(logit_scale · image @ text.T) (NCE uses its argmax). "
              f"Baselines ({', '.join(sorted(BASELINES))}) are ranked beside the estimators.", ""]
    atomic_write_bytes(out / "leaderboard.md", "\n".join(parts).encode())
    atomic_write_bytes(out / "scores.csv", collected["seconds"].sort_values(["estimator", "encoder", "task"])
                       .to_csv(index=False, float_format="%.10g").encode())
    atomic_write_bytes(out / "outcomes.csv", collected["outcomes"].sort_values(["encoder", "method", "task", "seed"])
                       .to_csv(index=False, float_format="%.10g").encode())
    return {"missing": missing, "stats": stats, "seconds": seconds, "path": out / "leaderboard.md"}
