"""Render the leaderboard: a markdown page, CSVs of every number and scatter plots.

It renders the frames it is given (``benchmark.cli.board.build_board`` reads and evaluates the tables)
and imports nothing from ``benchmark``. Same inputs, byte-identical files: no wall-clock time is
written (the date is the newest result's), tables are sorted, and PNGs carry no metadata.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from encoders.cache import atomic_write_bytes

from .selection import section as selection_section
from .selection import write_csvs as write_selection_csvs

TITLES = {"id_gain_norm": "In-domain gain over zero-shot error (id_gain_norm)",
          "id_gain": "In-domain gain (id_gain = acc_ft - acc_zs on the target)",
          "ood_change": "Out-of-domain change (ood_change = mean acc_ft - acc_zs on the tasks of other datasets)"}
RANK_BY = "id_gain_norm"
ORDER = (RANK_BY, "id_gain", "ood_change")
PLOTS = ("id_gain", "id_gain_norm", "ood_change")
TOP = 3
PIPELINE_CHECK = ("> **PIPELINE CHECK, NOT A RESULT**: this suite's encoders have random weights (zero-shot "
                  "accuracy at chance), so the tables below exercise the pipeline and say nothing about the "
                  "estimators.")


def _fmt(x, digits=2, sign="+") -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:{sign}.{digits}f}"


def _count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _interval(lo, hi) -> str:
    return "-" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.2f}, {hi:+.2f}]"


def _table(body, headers) -> str:
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _ranking(summary: pd.DataFrame, outcome: str, seconds: pd.Series, reference: str) -> str:
    rows = []
    for r in summary[summary["outcome"] == outcome].itertuples():
        name = (f"**{r.estimator}**" if r.estimator == reference else r.estimator) + \
            (" (baseline)" if r.baseline else "")
        versus = "-" if not np.isfinite(r.ref_diff) else (
            f"{r.ref_diff:+.2f} {_interval(r.ref_diff_lo, r.ref_diff_hi)} p={r.ref_p_holm:.2g}"
            + ("*" if r.ref_p_holm < 0.05 else ""))
        ranked = np.isfinite(r.rank)
        rows.append([int(r.rank) if ranked else "-", name, f"{_fmt(r.rho)} {_interval(r.rho_lo, r.rho_hi)}",
                     f"{int(r.rank_lo)}–{int(r.rank_hi)}" if ranked else "-",
                     f"{int(r.lodo_rank_min)}–{int(r.lodo_rank_max)}" if ranked else "-",
                     "-" if not np.isfinite(r.partial) else
                     f"{_fmt(r.partial)} {_interval(r.partial_lo, r.partial_hi)} "
                     f"{r.partial_positive}/{r.partial_groups}",
                     _fmt(r.pearson), _fmt(r.kendall), _fmt(r.wtau),
                     f"{_fmt(r.loto_skill_median)} ({r.loto_positive}/{r.loto_groups})", versus,
                     _fmt(seconds.get(r.estimator, np.nan), 4, "")])
    return _table(rows, ["#", "estimator", "ρ⁺ [95%]", "rank band", "LODO ranks", "partial r⁺ given acc_zs [95%] >0",
                         "r⁺", "τ⁺", "wτ⁺", "LOTO skill⁺ (>0)", f"Δρ⁺ vs {reference} [95%] Holm p", "s / cell"])


def _notes_under(summary: pd.DataFrame, outcome: str, absent: list[str], groups: int, min_n: int) -> list[str]:
    rows = summary[summary["outcome"] == outcome]
    lines = []
    constant = [f"{r.estimator} ({r.constant})" for r in rows.itertuples() if r.constant]
    if constant:
        lines.append(f"Constant score or delta (correlations 0) in some of the {groups} groups: {', '.join(constant)}.")
    unranked = sorted(set(absent) | set(rows.loc[~np.isfinite(rows["rank"]), "estimator"]))
    if unranked:
        lines.append(f"Not ranked (scored in no group of {min_n}+ tasks; Coverage says why): {', '.join(unranked)}.")
    return [" ".join(lines), ""] if lines else []


def _header(design: dict, n_compared: int) -> list[str]:
    datasets, reference = design["datasets"], design["reference"]
    shared = [f"{', '.join(tasks)} share {d}'s images" for d, tasks in datasets.items() if len(tasks) > 1]
    b = design["n_boot"]
    return [
        "Which zero-shot transferability estimator best predicts what fine-tuning does? Each estimator scores the",
        "zero-shot embeddings of a task's training sample; each fine-tuning cell measures the deltas on the target's",
        "test sample (in domain) and on the tasks of other datasets (out of domain).", "",
        f"**What this rests on:** {len(design['tasks'])} tasks from {len(datasets)} datasets"
        + (f" ({'; '.join(shared)})" if shared else "")
        + f", {_count(design['encoders'], 'encoder')}, {_count(design['methods'], 'fine-tuning method')}, "
        f"{_count(design['seeds'], 'seed')}: {design['groups']} (method, encoder) "
        f"groups, each with its tasks as the sample. The groups are not independent (the methods of an encoder share "
        f"one score vector, every group shares the tasks), so every interval resamples the {len(datasets)} datasets "
        f"jointly across all groups.", "",
        "How to read a table (one row per estimator; means are over the groups):", "",
        "- **ρ⁺**: Spearman correlation of score and delta within a group, *oriented*: negated for an estimator "
        "declared lower-is-better, and for ood_change (the IIMM paper expects a more transferable-looking task to "
        "gain more and to forget more), so > 0 means the estimator predicts in the direction it is used. Rows are "
        "ranked by its mean (bounded: one group moves it by at most 2 / groups). Deltas are exact fractions of "
        "test-sample counts, so equal deltas tie.",
        f"- **[95%]**: percentile interval of the aggregate itself over {b:,} cluster-bootstrap resamples: the "
        "datasets are drawn with replacement (class-subset tasks go with their dataset), the same draw for every "
        "group and estimator.",
        "- **rank band**: 2.5–97.5% range of the estimator's rank over those resamples; **LODO ranks**: its best "
        "and worst rank when one dataset is left out (see Stability).",
        "- **partial r⁺ given acc_zs**: oriented Pearson correlation of score and delta controlling for the "
        "target's zero-shot test accuracy (both residualised on it), mean [95%] and the groups where it is > 0: "
        "gains are larger where zero-shot accuracy leaves more headroom, and this removes that shared part.",
        "- **r⁺**, **τ⁺**, **wτ⁺**: oriented Pearson r, Kendall τ-b and weighted τ (scipy defaults), means.",
        "- **LOTO skill⁺**: each task's delta predicted by a line fitted on the group's other tasks, its slope held "
        "to the oriented direction (0 if the fit points the other way); skill = 1 − PRESS / PRESS of the "
        "leave-one-out mean forecast, so > 0 beats predicting the other tasks' mean and 0 ties it. Median over "
        "groups (groups > 0).",
        f"- **Δρ⁺ vs {reference}**: mean paired difference of ρ⁺ (estimator − {reference}) [95%], and its two-sided "
        f"bootstrap p-value, Holm-adjusted over the {n_compared} comparisons with {reference} in the same table "
        f"(smallest attainable p: {design['smallest_p']:.2g}); * marks adjusted p < 0.05.",
        "- **s / cell**: mean scoring time per (encoder, task) cell.", ""]


def _stability(summary: pd.DataFrame, stability: pd.DataFrame, design: dict) -> str:
    reference = design["reference"]

    def top(frame, outcome):
        ranked = frame[frame["outcome"] == outcome].sort_values(["rank", "estimator"])
        ref = ranked.loc[ranked["estimator"] == reference, "rank"]
        return ", ".join(ranked["estimator"].head(TOP)) + (f" ({reference} {int(ref.iloc[0])})" if len(ref) else "")

    body = [["(none)"] + [top(summary[np.isfinite(summary["rank"])], o) for o in ORDER]]
    for d, tasks in design["datasets"].items():
        body.append([f"{d} ({_count(tasks, 'task')})"] + [top(stability[stability["left_out"] == d], o) for o in ORDER])
    return _table(body, ["left out", *[f"{o}: top {TOP} by ρ⁺ ({reference}'s rank)" for o in ORDER]])


def _headroom(groups: pd.DataFrame) -> list[str]:
    enc = groups[(groups["group_kind"] == "encoder") & groups["r_delta_zs"].notna()]
    if enc.empty:
        return ["No zero-shot accuracy in the outcomes: no partial correlations.", ""]
    per_group = enc.drop_duplicates(["outcome", "method", "group"])
    means = per_group.groupby("outcome")["r_delta_zs"].agg(["mean", "min", "max"])
    text = ", ".join(f"{o} {means.loc[o, 'mean']:+.2f} [{means.loc[o, 'min']:+.2f}, {means.loc[o, 'max']:+.2f}]"
                     for o in ORDER if o in means.index)
    scores = enc[enc["outcome"] == RANK_BY].groupby(["estimator", "group"])["r_score_zs"].first().unstack("group")
    body = [[e] + [_fmt(v) for v in row] for e, row in zip(scores.index, scores.to_numpy())]
    return [f"Pearson r of each delta with the target's zero-shot test accuracy, mean [min, max] over the groups: "
            f"{text}. The scores correlate with it too (below: r of each estimator's raw score with zero-shot "
            f"accuracy, per encoder), so part of any score-delta correlation is this shared headroom; the partial "
            f"r⁺ columns above hold it fixed.", "", _table(body, ["estimator", *scores.columns]), ""]


def _breakdown(groups: pd.DataFrame, by: str) -> str:
    rows = groups[(groups["group_kind"] == "encoder") & (groups["outcome"] == RANK_BY)]
    pivot = rows.groupby(["estimator", by])["spearman_signed"].mean().unstack(by).sort_index()
    body = [[e] + [_fmt(v) for v in row] for e, row in zip(pivot.index, pivot.to_numpy())]
    return _table(body, ["estimator", *pivot.columns])


def _coverage(table: pd.DataFrame) -> str:
    body = [[r.estimator, f"{r.scored} of {r.cells}", (r.not_scored or "-").replace("|", "/")]
            for r in table.itertuples()]
    return _table(body, ["estimator", "scored (encoder, task) cells", "not scored: why"])


def _outcome_summary(outcomes: pd.DataFrame) -> str:
    body = []
    for method, g in outcomes.groupby("method"):
        cells = [f"{g[o].mean():+.3f} [{g[o].min():+.2f}, {g[o].max():+.2f}]" for o in ("id_gain", "ood_change")]
        body.append([method, cells[0], f"{int((g['id_gain'] > 0).sum())}/{len(g)}", cells[1],
                     f"{int((g['ood_change'] < 0).sum())}/{len(g)}"])
    return _table(body, ["method", "id_gain mean [min, max]", "cells with id_gain > 0", "ood_change mean [min, max]",
                         "cells with ood_change < 0"])


def _noise(noise: pd.DataFrame) -> list[str]:
    def counted(lo, hi, noun):
        return f"{lo}{'' if lo == hi else f'–{hi}'} {noun}{'' if hi == 1 else 's'}"

    body = []
    for r in noise.itertuples():
        seeds = (f"{r.seed_cells} cells × {counted(r.seeds_min, r.seeds_max, 'seed')}" if r.seed_cells
                 else f"{counted(r.seeds_min, r.seeds_max, 'seed')} per cell")
        tasks = (f"{r.task_encoders} encoders × {counted(r.tasks_min, r.tasks_max, 'task')}" if r.task_encoders
                 else f"{counted(r.tasks_min, r.tasks_max, 'task')} per encoder")
        ratio = "∞" if r.ratio == np.inf else _fmt(r.ratio, 1, "")
        body.append([r.method, r.outcome, _fmt(r.seed_sd, 3, "") if np.isfinite(r.seed_sd) else "not measured",
                     _fmt(r.task_sd, 3, "") if np.isfinite(r.task_sd) else "not measured", ratio, f"{seeds}; {tasks}"])
    return ["**Seed noise beside task spread** (noise.csv): *seed sd* is how far a cell's delta moves between "
            "fine-tuning seeds (pooled over the (encoder, task) cells), *task sd* how far the seed-averaged delta "
            "moves from task to task (pooled over encoders); where task sd / seed sd is well above 1 the tasks "
            "differ by more than seed noise, and with one seed per cell that noise is not measured.", "",
            _table(body, ["method", "outcome", "seed sd", "task sd", "task sd / seed sd", "rests on"]), ""]


def _provenance(p: dict, suite: str | None) -> str:
    def listed(values):
        return ", ".join(map(str, values)) or "-"

    counts = f"{p['score_cells'] if p['score_cells'] is not None else '-'} score cells"
    if p.get("n_train"):
        counts += f" (train sample {p['n_train']})"
    return "\n".join([f"- suite: `{suite or 'unknown'}`", f"- encoders: {listed(p['encoders'])}",
                      f"- tasks: {listed(p['tasks'])}", f"- methods: {listed(p['methods'])}",
                      f"- seeds: {listed(p['seeds'])}", f"- n: {counts}, {p['outcome_cells']} fine-tuning cells",
                      f"- versions: {listed(f'{k} {v}' for k, v in sorted(p['versions'].items()))}",
                      f"- newest result: {p['newest'] or '-'}"])


def scatter_png(scores: pd.DataFrame, outcomes: pd.DataFrame, outcome: str) -> bytes:
    """One panel per estimator: score vs seed-averaged delta, coloured by encoder, least-squares line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = outcomes.groupby(["encoder", "method", "task"], as_index=False)[outcome].mean()
    data = scores.merge(means, on=["encoder", "task"])
    names = sorted(set(data["estimator"]))
    encoders = sorted(set(data["encoder"]))
    colours = dict(zip(encoders, plt.get_cmap("tab10").colors))
    cols = 5
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows),
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


def render(out: Path, tables: dict, evaluation, noise: pd.DataFrame, coverage: pd.DataFrame, missing: list[str],
           suite: str | None, *, baselines, min_n: int, selection=None, pipeline_check: bool = False) -> Path:
    """Write ``leaderboard.md``, ``stats.csv`` (per group), ``summary.csv`` (per outcome x estimator),
    ``stability.csv`` (one dataset left out), ``noise.csv`` (seed noise beside task spread) and plots
    into ``out``; return the page's path.

    ``tables``: ``scores``, ``outcomes`` (deltas as floats) and ``provenance`` of a board;
    ``evaluation``: ``benchmark.evaluation.tasks_protocol``'s result on them (None without scores or outcomes);
    ``noise``: ``benchmark.evaluation.noise.seed_noise`` of the outcomes;
    ``coverage``: one row per estimator (``benchmark.evaluation.tables.coverage``); ``missing``: what a full
    grid lacks; ``baselines``, ``min_n``: the evaluator's baseline names and smallest group;
    ``selection``: ``benchmark.evaluation.models_protocol.select_models``'s result (the ``models``
    protocol), rendered as its own section and CSVs (``leaderboard.selection``) when given;
    ``pipeline_check``: the suite's encoders have random weights, and the page says first that it ranks nothing."""
    out = Path(out)
    scores, outcomes = tables["scores"], tables["outcomes"]
    seconds = scores.groupby("estimator")["seconds"].mean()
    parts = [f"# transferbench leaderboard — suite `{suite or 'unknown'}`", ""]
    if pipeline_check:
        parts += [PIPELINE_CHECK, ""]
    if missing:
        parts += [f"> **PARTIAL** results: missing {'; '.join(missing)}. The tables cover what exists.", ""]
    if evaluation is not None:
        summary, groups, design = evaluation.summary, evaluation.groups, evaluation.design
        n_compared = int(summary.groupby("outcome")["ref_p"].count().max()) if len(summary) else 0
        parts += _header(design, n_compared)
        for outcome in ORDER:
            absent = sorted(set(coverage["estimator"]) - set(summary.loc[summary["outcome"] == outcome, "estimator"]))
            parts += [f"## {TITLES[outcome]}", "", _ranking(summary, outcome, seconds, design["reference"]), "",
                      *_notes_under(summary, outcome, absent, design["groups"], min_n)]
        parts += ["## Stability: one dataset left out", "",
                  "The top of each table when one dataset (with its class-subset tasks) is left out; the rank "
                  "bands and LODO ranks above summarise the same question for every row.", "",
                  _stability(summary, evaluation.stability, design), "",
                  "## Headroom: zero-shot accuracy", "", *_headroom(groups),
                  f"## Per fine-tuning method (ρ⁺ on {RANK_BY}, mean over encoders)", "",
                  _breakdown(groups, "method"), "",
                  f"## Per encoder (ρ⁺ on {RANK_BY}, mean over methods)", "", _breakdown(groups, "group"), "",
                  "## Measured fine-tuning outcomes (over encoders, tasks and seeds)", "", _outcome_summary(outcomes),
                  "", *_noise(noise)]
        for outcome in PLOTS:
            atomic_write_bytes(out / "plots" / f"scatter_{outcome}.png", scatter_png(scores, outcomes, outcome))
        parts += ["## Plots", ""] + [f"![{o}](plots/scatter_{o}.png)" for o in PLOTS] + [""]
        for name, frame in (("stats", groups), ("summary", summary), ("stability", evaluation.stability),
                            ("noise", noise)):
            atomic_write_bytes(out / f"{name}.csv", frame.to_csv(index=False, float_format="%.10g").encode())
    if selection is not None:
        parts += selection_section(selection)
        write_selection_csvs(out, selection)
    parts += ["## Coverage: every registered estimator", "", _coverage(coverage), "",
              "## Estimator run time (seconds per cell, mean)", "",
              _table([[k, _fmt(v, 4, "")] for k, v in seconds.sort_values(kind="stable").items()],
                     ["estimator", "seconds"]),
              "", "## Provenance", "", _provenance(tables["provenance"], suite), "",
              "Notes: the source model of LEEP and NCE is the encoder's own zero-shot classifier over the "
              "task's class prompts, softmax(logit_scale · image @ text.T) (NCE uses its argmax); for an image-only "
              "encoder, its ImageNet head. "
              f"Baselines ({', '.join(sorted(baselines))}) are ranked beside the estimators. Every number is in "
              "stats.csv (per group), summary.csv (per estimator), stability.csv and noise.csv; the board rebuilds "
              "from its own tables: `python -m benchmark leaderboard --tables DIR --out DIR`.", ""]
    atomic_write_bytes(out / "leaderboard.md", "\n".join(parts).encode())
    return out / "leaderboard.md"
