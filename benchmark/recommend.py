"""``select``: which of these encoders should I fine-tune on my task? The practitioner's question.

Each candidate encoder embeds a class-balanced sample of the task's training split (cached, as in a
run); every selected estimator scores each embedding (pool-relative ones, NCTI and ETran, over the
candidates together); the candidates are ranked by each estimator in its declared direction. A
board that ran the ``models`` protocol (its ``selection_summary.csv``) names the estimator it found
most reliable for model selection, with its mean weighted tau and interval, and whether that
estimator can be told apart from the others and from the static ranker; the null band says how
much a ranking of so few candidates can mean.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.evaluation.models_protocol import STATIC, THRESHOLD
from benchmark.evaluation.rank_stats import null_band
from benchmark.scoring import score_all
from estimators import ESTIMATORS, InvalidInput

NEED_MORE = 0.10  # a null band at or above this: the zoo is too small for one ranking to mean much


def select_encoders(task, encoders: list[str], estimators: list[str], *, n: int | None = 500, seed: int = 0,
                    prompts: str = "ensemble", board: Path | None = None, method: str | None = None,
                    data_root=None, cache_dir=None, device: str = "cpu", batch_size: int | None = None,
                    download: bool = False, random_state: int = 0, log=print) -> dict:
    """Embed ``task`` with every encoder id, score, rank; return the report (JSON-able, see ``report``)."""
    from encoders import get_encoder
    from encoders.extract import embed

    if len(set(encoders)) != len(encoders) or len(encoders) < 2:
        raise InvalidInput(f"--encoders needs at least 2 distinct encoder ids, got {encoders}")
    reference = _board_choice(board, method, estimators) if board is not None else None
    embeddings = {}
    for name in encoders:
        log(f"embedding {task.id} (train, n={n}) with {name}")
        embeddings[name] = embed(get_encoder(name), task, "train", n=n, seed=seed, prompts=prompts,
                                 data_root=data_root, cache_dir=cache_dir, device=device, batch_size=batch_size,
                                 download=download)
    scores, missed = score_all(embeddings, estimators, random_state=random_state)
    return report(task.id, encoders, scores, missed, reference, n=min(e.n for e in embeddings.values()))


def report(task: str, encoders: list[str], scores, missed, reference: dict | None, n: int) -> dict:
    """``{"task", "candidates", "n_train", "rankings": {estimator: [{"encoder", "score", "rank"}]},
    "not_scored", "null_band", "recommendation", "warnings"}``."""
    by_estimator: dict[str, dict[str, float]] = {}
    for s in scores:
        by_estimator.setdefault(s.estimator, {})[s.key] = s.score
    rankings = {}
    for name, values in sorted(by_estimator.items()):
        sign = 1 if ESTIMATORS.get(name).higher_is_better else -1
        order = sorted(values, key=lambda e: (-sign * values[e], e))
        rankings[name] = [{"encoder": e, "score": values[e],
                           "rank": 1 + sum(sign * values[o] > sign * values[e] for o in values)} for e in order]
    band = null_band(np.arange(len(encoders)), THRESHOLD)
    warnings = []
    if band >= NEED_MORE:
        warnings.append(f"with {len(encoders)} candidates a random score ranks them with weighted tau >= "
                        f"{THRESHOLD} in {band:.0%} of orderings: a ranking of so few candidates means little")
    recommendation = None
    if reference is not None:
        warnings += reference.pop("warnings")
        chosen = rankings.get(reference["estimator"])
        if chosen is None:
            warnings.append(f"the board's most reliable estimator {reference['estimator']} did not score here")
        else:
            recommendation = {**reference, "encoder": chosen[0]["encoder"],
                              "tied": [r["encoder"] for r in chosen if r["rank"] == 1][1:]}
    return {"task": task, "candidates": list(encoders), "n_train": n, "rankings": rankings,
            "not_scored": [{"encoder": s.key, "estimator": s.estimator, "status": s.status, "reason": s.reason}
                           for s in missed],
            "null_band": {"threshold": THRESHOLD, "candidates": len(encoders), "probability": band},
            "recommendation": recommendation, "warnings": warnings}


def _board_choice(board: Path, method: str | None, estimators: list[str]) -> dict:
    """The row of the board's ``selection_summary.csv`` with the highest mean weighted tau among the
    estimators that can score here, with what the board says about it (``warnings``)."""
    path = Path(board) / "selection_summary.csv"
    if not path.is_file():
        raise InvalidInput(f"--board {board}: no selection_summary.csv (build it with `python -m benchmark "
                           f"leaderboard --results DIR` or `--accuracies ACC.csv`)")
    summary = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "method" not in summary.columns:
        summary["method"] = ""
    summary["method"] = summary["method"].astype(str)
    methods = sorted(summary["method"].unique())
    method = method if method is not None else ("full" if "full" in methods else methods[0])
    if method not in methods:
        raise InvalidInput(f"--method {method!r}: the board has {', '.join(methods)}")
    table = summary[summary["method"] == method]
    usable = table[table["estimator"].isin(estimators)].sort_values("weighted_tau", ascending=False, kind="stable")
    if usable.empty:
        raise InvalidInput(f"--board {board}: none of the selected estimators is on its model-selection table")
    best = usable.iloc[0]
    warnings = []
    overlapping = table[(table["estimator"] != best["estimator"]) & (table["rank_lo"] <= best["rank_hi"])]
    if len(overlapping):
        warnings.append(f"the board cannot tell {best['estimator']} apart from {len(overlapping)} of its other "
                        f"{len(table) - 1} rows (their rank bands overlap)")
    if best["weighted_tau_lo"] <= 0:
        warnings.append(f"on the board, {best['estimator']}'s mean weighted tau interval includes 0")
    if best["estimator"] != STATIC and not (best.get("vs_static_lo", math.nan) > 0):
        warnings.append(f"on the board, {best['estimator']} does not beat the static ranker {STATIC} (a model's "
                        f"mean accuracy on other tasks)")
    return {"board": str(board), "method": method, "estimator": best["estimator"],
            "weighted_tau": float(best["weighted_tau"]), "interval": [float(best["weighted_tau_lo"]),
                                                                      float(best["weighted_tau_hi"])],
            "board_tasks": int(best["tasks"]), "warnings": warnings}


def format_report(rep: dict) -> str:
    """The report as text: one line per estimator (candidates best first), then the recommendation."""
    width = max([len(n) for n in rep["rankings"]] + [9])
    lines = [f"task {rep['task']}: {len(rep['candidates'])} candidates, {rep['n_train']} training images each",
             "", f"{'estimator':<{width + 2}}  ranking (best first; = ties)"]
    for name, ranked in rep["rankings"].items():
        arrow = "↑" if ESTIMATORS.get(name).higher_is_better else "↓"
        text = ""
        for i, r in enumerate(ranked):
            if i:
                text += " = " if r["rank"] == ranked[i - 1]["rank"] else " > "
            text += f"{r['encoder']} ({r['score']:.4g})"
        lines.append(f"{name + ' ' + arrow:<{width + 2}}  {text}")
    if rep["not_scored"]:
        reasons = sorted({f"{s['estimator']}: {s['reason']}" for s in rep["not_scored"]})
        lines += ["", f"not scored: {'; '.join(reasons)}"]
    rec = rep["recommendation"]
    if rec is not None:
        tied = f" (tied with {', '.join(rec['tied'])})" if rec["tied"] else ""
        lines += ["", f"recommended: {rec['encoder']}{tied}, by {rec['estimator']}, the most reliable estimator for "
                      f"model selection on {rec['board']} (method {rec['method'] or '-'}): mean weighted tau "
                      f"{rec['weighted_tau']:+.2f} [{rec['interval'][0]:+.2f}, {rec['interval'][1]:+.2f}] over "
                      f"{rec['board_tasks']} tasks"]
    lines += [f"warning: {w}" for w in rep["warnings"]]
    return "\n".join(lines)
