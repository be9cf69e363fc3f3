"""Build the board: read the tables (a results folder's cells or a board folder's CSVs), evaluate
them, and have ``leaderboard`` render the page, CSVs and plots beside the board's own tables.

Same inputs, byte-identical files; a board folder rebuilds from its own tables
(``build(..., from_tables=True)``), giving the same bytes.
"""
from __future__ import annotations

from pathlib import Path

from estimators import estimator_class, list_estimators
from leaderboard import render

from .evaluate import BASELINES, MIN_N, N_BOOT, SCORE_COLUMNS, evaluate
from .noise import seed_noise
from .tables import EXACT, collect, completeness, coverage, read_tables, write_tables


def build(source: Path, out: Path, suite: str | None = None, n_boot: int = N_BOOT, seed: int = 0,
          from_tables: bool = False) -> dict:
    """Write the board into ``out`` (``leaderboard.render`` and ``benchmark.tables.write_tables``).
    ``source``: a results folder of cells, or with ``from_tables`` a board folder. Returns
    ``{"missing", "evaluation", "path"}`` (``evaluation`` is None without scores or outcomes)."""
    collected = read_tables(source) if from_tables else collect(source)
    missing = completeness(collected)
    registered = list_estimators()
    cover = coverage(collected, registered, {n for n in registered if estimator_class(n).pool_relative})
    scores, outcomes = collected["scores"], collected["outcomes"]
    evaluation = None
    if not outcomes.empty and not scores.empty:
        evaluation = evaluate(scores[list(SCORE_COLUMNS)], outcomes[["encoder", "method", "task", "seed", *EXACT]],
                              n_boot=n_boot, seed=seed)
    floats = {**collected, "outcomes": outcomes.astype({c: float for c in EXACT})}
    suite = suite or collected["provenance"]["suite"]
    path = render(out, floats, evaluation, seed_noise(outcomes), cover, missing, suite,
                  baselines=BASELINES, min_n=MIN_N)
    write_tables(collected, out)
    return {"missing": missing, "evaluation": evaluation, "path": path}
