"""Seed noise beside task spread: do the tasks differ by more than fine-tuning seeds do?

Per fine-tuning method and outcome (``id_gain``, ``id_gain_norm``, ``ood_change``), from the exact
deltas (Fractions, or floats at their value), variances in float64 with ddof=1:

- ``seed_sd = sqrt(mean over (encoder, task) cells with >= 2 seeds of var(the cell's per-seed deltas))``;
- ``task_sd = sqrt(mean over encoders with >= 2 tasks of var(its seed-mean deltas across tasks))``, the
  seed means being the ones ``benchmark.evaluation.tasks_protocol`` correlates (``exact_mean``);
- ``ratio = task_sd / seed_sd``: well above 1, the tasks differ by more than the seeds do.

NaN where nothing can be pooled: with one seed per cell the seed sd is not measured.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.evaluation.tasks_protocol import OUTCOMES, exact_mean

NOISE_COLUMNS = ["method", "outcome", "seed_sd", "task_sd", "ratio", "seed_cells", "seeds_min", "seeds_max",
                 "task_encoders", "tasks_min", "tasks_max"]


def seed_noise(outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per method x outcome (``NOISE_COLUMNS``, sorted): the two pooled sds, their ratio, the
    cells the seed sd pools (``seed_cells``; ``seeds_min/max`` seeds per pooled cell, or per cell when
    none is pooled) and the encoders the task sd pools (``task_encoders``; ``tasks_min/max`` likewise).
    ``outcomes``: one row per encoder x method x task x seed with the three deltas."""
    rows = []
    for method, block in outcomes.groupby("method", sort=True):
        cells = {key: g for key, g in block.groupby(["encoder", "task"], sort=True)}
        for outcome in OUTCOMES:
            deltas = {key: np.array([float(v) for v in g[outcome]], dtype=np.float64) for key, g in cells.items()}
            seeded = [d for d in deltas.values() if len(d) >= 2]
            means: dict[str, list[float]] = {}
            for (encoder, _), g in cells.items():
                means.setdefault(encoder, []).append(exact_mean(g[outcome]))
            spread = [np.array(m, dtype=np.float64) for m in means.values() if len(m) >= 2]
            seed_sd = np.sqrt(np.mean([np.var(d, ddof=1) for d in seeded])) if seeded else np.nan
            task_sd = np.sqrt(np.mean([np.var(m, ddof=1) for m in spread])) if spread else np.nan
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.float64(task_sd) / np.float64(seed_sd)
            seeds = [len(d) for d in (seeded or deltas.values())]
            tasks = [len(m) for m in (spread or means.values())]
            rows.append({"method": method, "outcome": outcome, "seed_sd": seed_sd, "task_sd": task_sd, "ratio": ratio,
                         "seed_cells": len(seeded), "seeds_min": min(seeds), "seeds_max": max(seeds),
                         "task_encoders": len(spread), "tasks_min": min(tasks), "tasks_max": max(tasks)})
    return pd.DataFrame(rows, columns=NOISE_COLUMNS).sort_values(["method", "outcome"], ignore_index=True)
