"""How well do zero-shot estimator scores predict what fine-tuning does? (tables in, tables out)

The evaluator sees only tables, never torch:

- ``scores``: ``encoder, task, estimator, score`` (one zero-shot score per encoder x task x estimator);
- ``outcomes``: ``encoder, method, task, seed, id_gain, id_gain_norm, ood_change`` (one row per
  fine-tuning cell). Seeds are averaged first; ``n_seeds`` is kept for provenance.

Scores are joined to the seed-averaged outcomes on (encoder, task) separately for every
fine-tuning method, and every estimator x outcome x method is scored in two kinds of group:

- ``group_kind="encoder"``: one encoder, its tasks as the sample (the IIMM paper, arXiv 2407.15731,
  regresses the gain on IIMM per encoder across tasks). These groups also get the task bootstrap,
  leave-one-task-out prediction and the paired comparison with the reference estimator (IIMM).
- ``group_kind="task"``: one task, its encoders as the sample (the model-selection view of LogME,
  SFDA, NCTI...); only for (method, task) pairs with at least 3 encoders, point statistics only.

Conventions:

- Groups with ``n < 3`` get NaN statistics, never an exception; ``n`` says what there was.
- A group whose score or outcome vector is constant has ``constant=True`` and every correlation
  (Pearson, Spearman, Kendall, weighted tau) set to 0, R^2 = 0 and a NaN Fisher interval: scipy's
  ``weightedtau`` (and the others) give NaN there, and the TMLR benchmark of Chaves et al.
  (arXiv 2405.20420) maps constant scores to tau = 0. The line (slope, intercept, p-value) is NaN
  when the score is constant. Bootstrap resamples that are constant get the same treatment and
  are counted in ``boot_degenerate``.
- ``*_signed`` columns multiply by -1 for estimators declared ``higher_is_better=False``, so higher
  means "predicts larger deltas" for every estimator. ``wtau_signed`` is recomputed on the negated
  score, because weighted tau weights the top ranks and is not odd in its argument. The outcome's
  sign is never flipped: for ``ood_change`` the paper expects IIMM to correlate *negatively* (more
  gain, more forgetting), so there a strongly predictive estimator has a large negative value.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from estimators import UnknownName, estimator_class
from estimators.errors import InvalidInput

OUTCOMES = ("id_gain", "id_gain_norm", "ood_change")
SCORE_COLUMNS = ("encoder", "task", "estimator", "score")
OUTCOME_COLUMNS = ("encoder", "method", "task", "seed", *OUTCOMES)
#: Trivial or classic predictors ranked beside the published estimators (anchors.md section 3).
BASELINES = frozenset({"zero_shot_acc", "random", "modality_gap", "knn", "linear_probe"})
REFERENCE = "iimm"
MIN_N = 3
_Z = stats.norm.ppf(0.975)
_KEYS = ("estimator", "outcome", "method", "group_kind", "group")

COLUMNS = [
    *_KEYS, "baseline", "higher_is_better", "n", "n_seeds_min", "n_seeds_max", "constant",
    "pearson", "pearson_ci_lo", "pearson_ci_hi", "r2", "slope", "intercept", "p_value",
    "spearman", "kendall", "wtau",
    "pearson_signed", "spearman_signed", "kendall_signed", "wtau_signed",
    "n_boot", "boot_degenerate", "pearson_boot_lo", "pearson_boot_hi",
    "spearman_boot_lo", "spearman_boot_hi", "kendall_boot_lo", "kendall_boot_hi",
    "loto_mae", "loto_r2",
    "ref_n", "ref_diff", "ref_diff_lo", "ref_diff_hi", "ref_p", "ref_p_holm",
]
_COUNTS = {"constant": False, "n_boot": 0, "boot_degenerate": 0, "ref_n": 0}

SUMMARY_STATS = ("loto_r2", "loto_mae", "r2", "pearson", "pearson_signed", "spearman_signed",
                 "kendall_signed", "wtau", "wtau_signed")


# -- public API ---------------------------------------------------------------------------------
def evaluate(scores: pd.DataFrame, outcomes: pd.DataFrame,
             directions: Mapping[str, bool] | None = None, *, n_boot: int = 1000, seed: int = 0,
             reference: str = REFERENCE, baselines: Iterable[str] = BASELINES) -> pd.DataFrame:
    """Predictiveness statistics, one row per estimator x outcome x method x group kind x group.

    ``directions`` maps estimator name -> ``higher_is_better``; when None it is read from the
    registry (``estimators.estimator_class(name).higher_is_better``). Columns (``COLUMNS``):

    - keys ``estimator, outcome, method, group_kind, group``; ``baseline`` (name in ``baselines``),
      ``higher_is_better``; ``n`` (points in the group), ``n_seeds_min/max`` (seeds per cell);
    - ``pearson`` r with its 95% Fisher-z interval ``pearson_ci_lo/hi`` (tanh(atanh r +- 1.96 /
      sqrt(n - 3)); NaN when n <= 3); ``r2`` = r^2, ``slope``, ``intercept``, ``p_value`` of the
      least-squares line ``outcome ~ score`` (``scipy.stats.linregress``, two-sided test of slope 0);
    - ``spearman`` rho (Pearson r of average ranks), ``kendall`` tau-b ((concordant - discordant) /
      sqrt((pairs untied in score) (pairs untied in outcome)), as ``scipy.stats.kendalltau``),
      ``wtau``: ``scipy.stats.weightedtau(score, outcome)`` with its defaults (hyperbolic weigher,
      rank=True), the headline statistic of LogME/SFDA/NCTI/IIMM; the ``*_signed`` copies;
    - encoder groups only: ``pearson/spearman/kendall_boot_lo/hi``, 95% percentile intervals over
      ``n_boot`` resamples of the tasks with replacement (numpy Generator seeded from ``seed`` and
      the group's encoder and task list, so a row does not depend on the other rows), with
      ``boot_degenerate`` constant resamples; ``loto_mae`` and ``loto_r2`` (see ``loto``);
      ``ref_*``: the paired comparison with ``reference`` (see ``compare``), Holm-adjusted
      (``ref_p_holm``) across the estimators of the same outcome x method x encoder.

    Deterministic: the same inputs and seed give an identical frame, sorted by the keys.
    Raises InvalidInput for missing columns, non-finite values, duplicate rows or unknown directions.
    """
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise InvalidInput(f"n_boot must be a positive integer, got {n_boot!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    scores = _checked(scores, "scores", SCORE_COLUMNS, keys=SCORE_COLUMNS[:3])
    outcomes = _checked(outcomes, "outcomes", OUTCOME_COLUMNS, keys=OUTCOME_COLUMNS[:4])
    sign = {name: 1.0 if hib else -1.0
            for name, hib in _directions(sorted(scores["estimator"].unique()), directions).items()}
    cells = join(scores, outcomes).melt(
        id_vars=["estimator", "method", "encoder", "task", "score", "n_seeds"],
        value_vars=list(OUTCOMES), var_name="outcome", value_name="y")

    rows = []
    for kind, unit in (("encoder", "task"), ("task", "encoder")):
        for (outcome, method, group), block in cells.groupby(["outcome", "method", kind], sort=True):
            if kind == "task" and block["encoder"].nunique() < MIN_N:
                continue
            block = block.sort_values(["estimator", unit])
            names, units = block["estimator"].to_numpy(), block[unit].to_numpy()
            x, y, n_seeds = (block[c].to_numpy() for c in ("score", "y", "n_seeds"))
            starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
            parts = {names[a]: slice(a, b) for a, b in zip(starts, np.r_[starts[1:], len(names)])}
            for name, part in parts.items():
                xs, ys = x[part], y[part]
                row = {"estimator": name, "outcome": outcome, "method": method, "group_kind": kind,
                       "group": group, "n": len(xs), "n_seeds_min": n_seeds[part].min(),
                       "n_seeds_max": n_seeds[part].max(), **_point(xs, ys, sign[name])}
                if kind == "encoder" and len(xs) >= MIN_N:
                    row.update(_bootstrap(xs, ys, _resamples(seed, group, units[part], n_boot)),
                               **loto(xs, ys))
                    if reference in parts and name != reference:
                        ref = parts[reference]
                        common, i, j = np.intersect1d(units[part], units[ref], return_indices=True)
                        row.update(compare(xs[i], x[ref][j], ys[i], sign[name], sign[reference],
                                           _resamples(seed, group, common, n_boot)))
                rows.append(row)

    out = pd.DataFrame(rows, columns=COLUMNS)
    out["baseline"] = out["estimator"].isin(set(baselines))
    out["higher_is_better"] = out["estimator"].map(sign) > 0
    out = out.fillna(_COUNTS).astype({c: type(v) for c, v in _COUNTS.items()})
    out["ref_p_holm"] = out.groupby(list(_KEYS[1:]))["ref_p"].transform(holm)
    return out.sort_values(list(_KEYS)).reset_index(drop=True)


def summarise(stats_frame: pd.DataFrame) -> pd.DataFrame:
    """Per estimator x outcome x method: the mean over encoder groups of ``SUMMARY_STATS``.

    Columns: ``estimator, outcome, method, baseline, n_groups`` (encoder groups with a finite
    ``loto_r2``), ``n_constant``, ``mean_<stat>`` for each of ``SUMMARY_STATS`` (NaN groups are
    skipped), and ``rank``: 1 = highest ``mean_loto_r2`` within outcome x method (ties share the
    best rank, NaN unranked). The leaderboard ranks by it on ``id_gain_norm``. Sorted by outcome,
    method, rank, estimator.
    """
    needed = [*_KEYS, "baseline", "constant", *SUMMARY_STATS]
    missing = [c for c in needed if c not in getattr(stats_frame, "columns", ())]
    if missing:
        raise InvalidInput(f"summarise needs the frame evaluate() returns; missing column(s) {missing}")
    groups = stats_frame[stats_frame["group_kind"] == "encoder"].groupby(
        ["estimator", "outcome", "method"], sort=True)
    out = groups[list(SUMMARY_STATS)].mean().add_prefix("mean_")
    out.insert(0, "n_constant", groups["constant"].sum().astype(int))
    out.insert(0, "n_groups", groups["loto_r2"].count())
    out.insert(0, "baseline", groups["baseline"].first().astype(bool))
    out = out.reset_index()
    out["rank"] = out.groupby(["outcome", "method"])["mean_loto_r2"].rank(ascending=False, method="min")
    return out.sort_values(["outcome", "method", "rank", "estimator"], na_position="last",
                           ignore_index=True)


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and do not count in m.

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)); returned in input order.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def join(scores: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Seed-averaged outcomes joined to scores on (encoder, task), one row per estimator x method x
    encoder x task that has both; ``n_seeds`` counts the seeds averaged. Inputs are not validated."""
    means = (outcomes.groupby(["encoder", "method", "task"], sort=True)
             .agg(n_seeds=("seed", "size"), **{o: (o, "mean") for o in OUTCOMES}).reset_index())
    return scores.merge(means, on=["encoder", "task"], how="inner")


def loto(x: np.ndarray, y: np.ndarray) -> dict:
    """Leave-one-task-out prediction of ``y`` from ``x`` (the IIMM paper's use: fit gain ~ score
    on tasks already fine-tuned, predict a new one).

    For each point i, least squares on the other points predicts yhat_i (the training mean when
    their x is constant). ``loto_mae`` = mean |y - yhat|; ``loto_r2`` = 1 - sum (y - yhat)^2 /
    sum (y - mean(y))^2 with mean(y) over *all* points (PRESS-style predictive R^2, Allen 1974);
    <= 0 means no better than predicting the mean; NaN when y is constant.
    """
    n = len(x)
    keep = ~np.eye(n, dtype=bool)  # row i: every point but i
    xt, yt = (np.broadcast_to(v, (n, n))[keep].reshape(n, n - 1) for v in (x, y))
    mx, my = xt.mean(axis=1), yt.mean(axis=1)
    dx = xt - mx[:, None]
    slope = np.divide((dx * (yt - my[:, None])).sum(axis=1), (dx ** 2).sum(axis=1),
                      out=np.zeros(n), where=np.ptp(xt, axis=1) > 0)
    err = y - (my + slope * (x - mx))
    r2 = 1 - (err ** 2).sum() / ((y - y.mean()) ** 2).sum() if np.ptp(y) > 0 else np.nan
    return {"loto_mae": np.abs(err).mean(), "loto_r2": r2}


def compare(x: np.ndarray, x_ref: np.ndarray, y: np.ndarray, sign: float, sign_ref: float,
            counts: np.ndarray) -> dict:
    """Paired comparison of an estimator with the reference on the same task resamples.

    ``counts`` (B, n) holds how often each task is drawn in each resample. The statistic is the
    difference of direction-adjusted Spearman rho, estimator minus reference (rank-based, so the
    two scores' scales do not matter). ``ref_diff_lo/hi``: 95% percentile interval of the resampled
    differences d*; ``ref_p``: two-sided bootstrap p-value 2 min(P*(d* <= 0), P*(d* >= 0)),
    add-one smoothed and capped at 1 (the smallest level whose percentile interval excludes 0).
    For ``ood_change`` the expected rho is negative, so there a negative difference means the
    estimator tracks forgetting more strongly than the reference.
    """
    n = len(x)
    if n < MIN_N:
        return {"ref_n": n}
    w = np.vstack([np.ones(n), counts])
    d = sign * _spearman(x, y, w) - sign_ref * _spearman(x_ref, y, w)
    lo, hi = np.percentile(d[1:], [2.5, 97.5])
    tail = min((d[1:] <= 0).sum(), (d[1:] >= 0).sum())
    return {"ref_n": n, "ref_diff": d[0], "ref_diff_lo": lo, "ref_diff_hi": hi,
            "ref_p": min(1.0, 2 * (tail + 1) / len(d))}


# -- statistics of a sample x, y (n,) under rows of weights w (B, n) ----------------------------
# A bootstrap resample is the original points repeated w[b, i] times, so each statistic is the
# statistic of that expanded sample; w = 1 everywhere is the point estimate. One code path serves
# both, and a resample costs a few (B, n) x (n, n) products instead of a sort.
def _constant(x, y, w):
    """Rows whose drawn points have a constant x or a constant y."""
    drawn = w > 0
    return ((np.where(drawn, x, np.inf).min(axis=1) == np.where(drawn, x, -np.inf).max(axis=1))
            | (np.where(drawn, y, np.inf).min(axis=1) == np.where(drawn, y, -np.inf).max(axis=1)))


def _pearson(x, y, w):
    """Pearson r = sum w dx dy / sqrt(sum w dx^2 sum w dy^2), deviations from weighted means;
    0 on constant rows. ``x`` and ``y`` may be (n,) or (B, n)."""
    xc = x - (w * x).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    yc = y - (w * y).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    den = np.sqrt((w * xc ** 2).sum(axis=1) * (w * yc ** 2).sum(axis=1))
    ok = ~_constant(np.broadcast_to(x, w.shape), np.broadcast_to(y, w.shape), w) & (den > 0)
    return np.clip(np.divide((w * xc * yc).sum(axis=1), den, out=np.zeros(len(w)), where=ok), -1.0, 1.0)


def _ranks(x, w):
    """Average ranks in the expanded sample (ties share their mean rank, as scipy's rankdata):
    rank_i = #{points below x_i} + (#{points equal to x_i} + 1) / 2."""
    return w @ (x[:, None] < x[None, :]) + (w @ (x[:, None] == x[None, :]) + 1) / 2


def _spearman(x, y, w):
    """Spearman rho: Pearson r of average ranks (Spearman 1904; ``scipy.stats.spearmanr``)."""
    return _pearson(_ranks(x, w), _ranks(y, w), w)


def _kendall(x, y, w):
    """Kendall tau-b = (concordant - discordant) / sqrt(#pairs untied in x * #pairs untied in y),
    over pairs of the expanded sample (Kendall 1945; ``scipy.stats.kendalltau``)."""
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])

    def twice_sum_over_pairs(m):
        return ((w @ m) * w).sum(axis=1)

    den = np.sqrt(twice_sum_over_pairs(np.abs(sx)) * twice_sum_over_pairs(np.abs(sy)))
    return np.divide(twice_sum_over_pairs(sx * sy), den, out=np.zeros(len(w)), where=den > 0)


def _point(x, y, sign) -> dict:
    """Point statistics of one group (none below MIN_N points, so they become NaN)."""
    n = len(x)
    if n < MIN_N:
        return {}
    w = np.ones((1, n))
    constant = bool(_constant(x[None], y[None], w)[0])
    r, rho, tau = (f(x, y, w)[0] for f in (_pearson, _spearman, _kendall))
    wtau = 0.0 if constant else stats.weightedtau(x, y).statistic
    wtau_signed = wtau if constant or sign > 0 else stats.weightedtau(-x, y).statistic
    with np.errstate(divide="ignore"):
        z = np.arctanh(r)
    ci = (np.nan, np.nan) if constant or n <= 3 else np.tanh(z + np.array([-_Z, _Z]) / np.sqrt(n - 3))
    line = stats.linregress(x, y) if np.ptp(x) > 0 else None
    return {"constant": constant, "pearson": r, "pearson_ci_lo": ci[0], "pearson_ci_hi": ci[1],
            "r2": r ** 2, "slope": line.slope if line else np.nan,
            "intercept": line.intercept if line else np.nan, "p_value": line.pvalue if line else np.nan,
            "spearman": rho, "kendall": tau, "wtau": wtau, "pearson_signed": sign * r,
            "spearman_signed": sign * rho, "kendall_signed": sign * tau, "wtau_signed": wtau_signed}


def _bootstrap(x, y, counts) -> dict:
    """95% percentile intervals of Pearson, Spearman and Kendall over the resamples ``counts``."""
    out = {"n_boot": len(counts), "boot_degenerate": int(_constant(x[None], y[None], counts).sum())}
    for name, f in (("pearson", _pearson), ("spearman", _spearman), ("kendall", _kendall)):
        out[f"{name}_boot_lo"], out[f"{name}_boot_hi"] = np.percentile(f(x, y, counts), [2.5, 97.5])
    return out


def _resamples(seed: int, group: str, tasks, n_boot: int) -> np.ndarray:
    """(n_boot, n) draw counts of the n tasks in resamples drawn with replacement. The Generator
    is seeded by ``seed`` and a CRC of the group and its task list, so estimators with the same
    tasks in a group share the resamples and a row does not depend on the other rows."""
    tasks = list(tasks)
    n = len(tasks)
    rng = np.random.default_rng([int(seed), zlib.crc32("\x1f".join([group, *tasks]).encode())])
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n)


# -- input checks -------------------------------------------------------------------------------
def _checked(df, name: str, columns, keys) -> pd.DataFrame:
    """A copy with string keys and float values, or InvalidInput naming the first problem."""
    if not isinstance(df, pd.DataFrame):
        raise InvalidInput(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidInput(f"{name} is missing column(s) {missing}; expected {list(columns)}")
    df = df.loc[:, list(columns)].reset_index(drop=True)
    keys = list(keys)
    for c in keys:
        if df[c].isna().any():
            raise InvalidInput(f"{name} has {int(df[c].isna().sum())} missing value(s) in key column {c!r}")
    df[keys] = df[keys].astype(str)
    for c in columns:
        if c in keys:
            continue
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            first = df.loc[np.flatnonzero(bad)[0], keys].to_dict()
            raise InvalidInput(f"{name} has {int(bad.sum())} non-finite or non-numeric value(s) in {c!r}, "
                               f"first at {first}")
        df[c] = values
    dup = df.duplicated(keys)
    if dup.any():
        first = df.loc[np.flatnonzero(dup)[0], keys].to_dict()
        raise InvalidInput(f"{name} has {int(dup.sum())} duplicate row(s) for {keys}, first at {first}")
    return df


def _directions(names, directions: Mapping[str, bool] | None) -> dict[str, bool]:
    """``higher_is_better`` per estimator name, from ``directions`` or else from the registry."""
    if directions is not None:
        missing = [n for n in names if n not in directions]
        if missing:
            raise InvalidInput(f"directions has no entry for estimator(s) {missing}")
        return {n: bool(directions[n]) for n in names}
    try:
        return {n: bool(estimator_class(n).higher_is_better) for n in names}
    except UnknownName as err:
        raise InvalidInput(f"{err}; pass directions={{name: higher_is_better}} for unregistered "
                           f"estimators") from None
