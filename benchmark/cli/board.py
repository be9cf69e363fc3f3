"""Build the board: read the tables (a results folder's cells or a board folder's CSVs), evaluate
them, and have ``leaderboard`` render the page, CSVs and plots beside the board's own tables.

Same inputs, byte-identical files; a board folder rebuilds from its own tables
(``build_board(..., from_tables=True)``), giving the same bytes.
"""
from __future__ import annotations

from pathlib import Path

from benchmark.evaluation.models_protocol import (
    checked_attributes,
    directions_of,
    grid_accuracies,
    read_table,
    select_models,
    split_directions,
)
from benchmark.evaluation.noise import seed_noise
from benchmark.evaluation.tables import EXACT, collect, completeness, coverage, read_tables, write_tables
from benchmark.evaluation.tasks_protocol import MIN_N, N_BOOT, SCORE_COLUMNS, evaluate
from benchmark.suites import SUITES, get_suite
from encoders.cache import atomic_write_bytes
from estimators import baselines, estimator_class, list_estimators
from estimators.errors import InvalidInput
from leaderboard import render
from leaderboard.render import PIPELINE_CHECK
from leaderboard.selection import render_selection

PROTOCOLS = ("all", "tasks", "models")


def build_board(source: Path, out: Path, suite: str | None = None, n_boot: int = N_BOOT, seed: int = 0,
                from_tables: bool = False, protocol: str = "all", models: Path | None = None) -> dict:
    """Write the board into ``out`` (``leaderboard.render`` and ``benchmark.evaluation.tables.write_tables``).
    ``source``: a results folder of cells, or with ``from_tables`` a board folder. ``protocol``: ``tasks``
    (per encoder, across tasks), ``models`` (per task, across encoders, with the pooled view) or ``all``;
    ``models``: an optional CSV of model attributes (``model`` + numeric columns, e.g. parameter count)
    ranked as static baselines; default: the source folder's ``models.csv`` if it has one (a board
    keeps it beside its cells, and ``out`` gets a copy). Returns ``{"missing", "evaluation", "selection", "path"}``
    (``evaluation`` / ``selection`` are None when not asked for or without scores and outcomes)."""
    collected = read_tables(source) if from_tables else collect(source)
    if models is None and (Path(source) / "models.csv").is_file():
        models = Path(source) / "models.csv"
    missing = completeness(collected)
    registered = list_estimators()
    cover = coverage(collected, registered, {n for n in registered if estimator_class(n).pool_relative})
    scores, outcomes, described = collected["scores"], collected["outcomes"], collected["estimators"]
    directions = dict(zip(described["estimator"], described["higher_is_better"]))
    flagged = baselines() | set(described.loc[described["baseline"], "estimator"])
    evaluation = selection = None
    deltas = outcomes.dropna(subset=list(EXACT))  # the tasks protocol needs every delta (image-only: none)
    if not outcomes.empty and not scores.empty:
        if protocol in ("all", "tasks") and not deltas.empty:
            evaluation = evaluate(scores[list(SCORE_COLUMNS)],
                                  deltas[["encoder", "method", "task", "seed", *EXACT]], directions, n_boot=n_boot,
                                  seed=seed, baselines=flagged)
        if protocol in ("all", "models"):
            grid_scores = scores.rename(columns={"encoder": "model"})[["task", "model", "estimator", "score"]]
            selection = select_models(grid_accuracies(outcomes), grid_scores, directions, baselines=flagged,
                                      attributes=_attributes(models), n_boot=n_boot, seed=seed, with_pooled=True)
    suite = suite or collected["provenance"]["suite"]
    check_only = suite in SUITES and get_suite(suite).pipeline_check
    if protocol == "models":
        if selection is None:
            raise InvalidInput(f"{source} has no scores and outcomes to rank models by")
        path = render_selection(out, selection, f"transferbench model selection — suite `{suite or 'unknown'}`",
                                ([PIPELINE_CHECK, ""] if check_only else [])
                                + [f"Ground truth: the fine-tuned accuracy of the outcome cells in {source} "
                                   "(seed means); scores: the estimators' scores of the same cells."])
        return {"missing": missing, "evaluation": None, "selection": selection, "path": path}
    floats = {**collected, "outcomes": deltas.astype({c: float for c in EXACT})}
    path = render(out, floats, evaluation, seed_noise(deltas), cover, missing, suite,
                  baselines=flagged, min_n=MIN_N, selection=selection, pipeline_check=check_only)
    write_tables(collected, out)
    if models is not None and protocol != "tasks":
        atomic_write_bytes(Path(out) / "models.csv", Path(models).read_bytes())
    return {"missing": missing, "evaluation": evaluation, "selection": selection, "path": path}


def build_selection_board(accuracies: Path, out: Path, scores: Path | None = None, models: Path | None = None,
                    n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The ``models`` protocol on published files: ``accuracies`` (``task,model,accuracy[,method]``),
    optional ``scores`` (``task,model,estimator,score[,higher_is_better]``; without it only the baselines
    that need no embeddings are ranked) and ``models`` (attributes). Writes ``leaderboard.md``,
    ``selection.csv``, ``selection_summary.csv`` and ``selection_skipped.csv`` into ``out``."""
    given = {}
    score_frame = None
    if scores is not None:
        score_frame, given = split_directions(read_table(scores, "scores"))
    selection = select_models(read_table(accuracies, "accuracies"), score_frame,
                              directions_of(set(score_frame["estimator"].astype(str)) if score_frame is not None
                                            and "estimator" in score_frame.columns else (), given),
                              attributes=_attributes(models), n_boot=n_boot, seed=seed)
    sources = [f"Ground truth: `{Path(accuracies).name}`"
               + (f"; scores: `{Path(scores).name}`" if scores is not None else
                  "; no scores given, so only the baselines that need no embeddings are ranked")
               + (f"; model attributes: `{Path(models).name}`." if models is not None else ".")]
    path = render_selection(out, selection, f"Model selection on `{Path(accuracies).stem}`", sources)
    return {"selection": selection, "path": path}


def _attributes(models: Path | None):
    return None if models is None else checked_attributes(read_table(models, "models"))
