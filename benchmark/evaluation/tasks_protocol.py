"""How well do zero-shot estimator scores predict what fine-tuning does? (tables in, tables out)

The evaluator sees only tables, never torch:

- ``scores``: ``encoder, task, estimator, score`` (one zero-shot score per encoder x task x estimator);
- ``outcomes``: ``encoder, method, task, seed, id_gain, id_gain_norm, ood_change`` and optionally
  ``acc_zs`` (the target's zero-shot test accuracy), one row per fine-tuning cell. Values may be
  ``fractions.Fraction`` (exact: ``benchmark.finetune.outcomes.exact_deltas``) or floats (taken at their exact
  binary value). Seeds are averaged exactly, then each mean becomes its nearest double, so deltas that
  are equal as fractions (0.534 - 0.440 and 0.182 - 0.088) tie exactly in every rank statistic.

Groups. Scores are joined to the seed-averaged outcomes on (encoder, task) for every method:

- ``group_kind="encoder"``: one (method, encoder) pair, its tasks the sample (the IIMM paper regresses
  the gain on IIMM per encoder across tasks). These get resampled intervals, leave-one-task-out
  prediction, the paired comparison with the reference (IIMM), and make up the aggregates.
- ``group_kind="task"``: one task, its encoders the sample (the model-selection view of LogME, SFDA,
  NCTI); only (method, task) pairs with at least 3 encoders, point statistics only.

Orientation. ``*_signed`` statistics are multiplied by -1 for an estimator declared lower-is-better
and by ``EXPECTED_SIGN[outcome]`` (-1 for ``ood_change``: the IIMM paper expects a more
transferable-looking task to gain more in domain *and* forget more out of domain). Positive then
means "predicts in the direction the estimator is used", for every estimator and outcome. Weighted
tau is recomputed on the oriented data (it is not odd in its arguments).

Resampling. The groups are not independent: the methods of an encoder share one score vector and
every group shares the tasks. So one set of resamples serves every group and estimator: the tasks'
datasets (``Task.dataset``: a dataset and its class-subset tasks form one cluster) are drawn with
replacement, each task weighted by how often its dataset was drawn (cluster bootstrap); the same
weights also leave out one dataset at a time (stability). An aggregate's interval is the percentile
interval of that aggregate over the resamples, never a mean of per-group endpoints.

Conventions: groups with ``n < 3`` get NaN statistics (``n`` says what there was); a constant score
or outcome gives every correlation 0 (scipy gives NaN; Chaves et al., arXiv 2405.20420, map it to
tau = 0) and ``constant=True``; constant resamples count in ``boot_degenerate``.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import special, stats

from estimators import UnknownName, estimator_class
from estimators import baselines as registered_baselines
from estimators.errors import InvalidInput

OUTCOMES = ("id_gain", "id_gain_norm", "ood_change")
#: The sign a predictive (direction-adjusted) score should have against each delta (IIMM paper).
EXPECTED_SIGN = {"id_gain": 1, "id_gain_norm": 1, "ood_change": -1}
ZERO_SHOT = "acc_zs"
SCORE_COLUMNS = ("encoder", "task", "estimator", "score")
OUTCOME_COLUMNS = ("encoder", "method", "task", "seed", *OUTCOMES)
#: Trivial or classic predictors, ranked beside the published estimators as reference points.
REFERENCE = "iimm"
MIN_N = 3
#: Resamples: the smallest two-sided p is 2 / (N_BOOT + 1) = 0.0002, below 0.05 / 18 (Holm's first step).
N_BOOT = 9999
LEVEL = 0.05
_Z = stats.norm.ppf(0.975)
#: scipy.stats.weightedtau without its axis/NaN-policy wrapper (6x the cost of the statistic on
#: 3-9 points; it passes finite 1-D inputs, the only ones given here, through unchanged).
_weightedtau = getattr(stats.weightedtau, "__wrapped__", stats.weightedtau)
_KEYS = ("estimator", "outcome", "method", "group_kind", "group")

COLUMNS = [
    *_KEYS, "baseline", "higher_is_better", "n", "n_seeds_min", "n_seeds_max", "constant",
    "pearson", "pearson_ci_lo", "pearson_ci_hi", "r2", "slope", "intercept", "p_value",
    "spearman", "kendall", "wtau", "partial_r", "r_score_zs", "r_delta_zs",
    "pearson_signed", "spearman_signed", "kendall_signed", "wtau_signed", "partial_r_signed",
    "n_boot", "boot_degenerate", "pearson_signed_lo", "pearson_signed_hi", "spearman_signed_lo",
    "spearman_signed_hi", "partial_r_signed_lo", "partial_r_signed_hi",
    "loto_mae", "loto_skill", "loto_skill_signed",
    "ref_n", "ref_diff", "ref_diff_lo", "ref_diff_hi", "ref_p", "ref_p_holm",
]
_COUNTS = {"constant": False, "n_boot": 0, "boot_degenerate": 0, "ref_n": 0}
SUMMARY_COLUMNS = [
    "outcome", "estimator", "baseline", "higher_is_better", "groups", "constant",
    "rho", "rho_lo", "rho_hi", "rank", "rank_lo", "rank_hi", "lodo_rank_min", "lodo_rank_max",
    "pearson", "pearson_lo", "pearson_hi", "partial", "partial_lo", "partial_hi", "partial_groups",
    "partial_positive", "kendall", "wtau", "loto_skill_median", "loto_groups", "loto_positive",
    "ref_diff", "ref_diff_lo", "ref_diff_hi", "ref_p", "ref_p_holm",
]
STABILITY_COLUMNS = ["outcome", "left_out", "tasks_left_out", "estimator", "rho", "rank"]
_AGGREGATED = ("spearman", "pearson", "partial")


@dataclass(frozen=True)
class Evaluation:
    """``groups``: one row per estimator x outcome x method x group kind x group (``COLUMNS``);
    ``summary``: one row per outcome x estimator over the encoder groups (``SUMMARY_COLUMNS``);
    ``stability``: the summary's rho and rank with each dataset left out (``STABILITY_COLUMNS``);
    ``design``: what the numbers rest on (tasks, datasets, encoders, methods, seeds, groups, resamples)."""

    groups: pd.DataFrame
    summary: pd.DataFrame
    stability: pd.DataFrame
    design: dict


# -- public API ---------------------------------------------------------------------------------
def evaluate(scores: pd.DataFrame, outcomes: pd.DataFrame, directions: Mapping[str, bool] | None = None, *,
             n_boot: int = N_BOOT, seed: int = 0, reference: str = REFERENCE,
             baselines: Iterable[str] | None = None, clusters: Mapping[str, str] | None = None) -> Evaluation:
    """Predictiveness statistics of every estimator for every outcome (see the module docstring).

    ``directions``: estimator -> ``higher_is_better`` (default: the registry's). ``clusters``: task ->
    the dataset its images come from (default: ``tasks.get_task(t).dataset``; an unregistered task is
    its own dataset). Per encoder group (``groups``):

    - ``pearson`` r, its Fisher-z 95% interval ``pearson_ci_lo/hi`` (n > 3), ``r2``, and ``slope``,
      ``intercept``, ``p_value`` of ``scipy.stats.linregress(score, outcome)``; ``spearman`` (Pearson r
      of average ranks), ``kendall`` tau-b and ``wtau`` (``scipy.stats.weightedtau`` defaults);
      ``partial_r``: Pearson r of score and outcome controlling for ``acc_zs`` (both residualised on it;
      n > 3); ``r_score_zs``, ``r_delta_zs``: Pearson r of the score and of the outcome with ``acc_zs``;
    - the oriented ``*_signed`` copies and, for Pearson, Spearman and partial r, 95% percentile
      intervals ``*_signed_lo/hi`` over the ``n_boot`` joint resamples;
    - ``loto_mae``, ``loto_skill``, ``loto_skill_signed`` (see ``loto``);
    - ``ref_*``: the oriented Spearman difference to ``reference`` on the common tasks, its interval,
      two-sided bootstrap p-value (``bootstrap_p``) and Holm adjustment over the estimators of the
      same outcome x method x encoder.

    ``summary`` (``SUMMARY_COLUMNS``), per outcome x estimator over its encoder groups: ``rho``, the
    mean oriented Spearman, ranked by (``rank``: 1 = best, ties share the best), with its joint
    interval ``rho_lo/hi``, the 2.5-97.5% range of its rank over the resamples ``rank_lo/hi`` and the
    best and worst rank with one dataset left out ``lodo_rank_min/max``; the same mean and interval for
    oriented Pearson and partial r (``partial_positive`` of ``partial_groups`` groups above 0); mean
    oriented Kendall and weighted tau; the median of ``loto_skill_signed`` (``loto_positive`` of
    ``loto_groups`` above 0); ``ref_*``: the mean paired rho difference to ``reference`` over common
    groups, its interval and p-value, Holm-adjusted over the comparisons of that outcome.

    Deterministic: the same inputs and seed give identical frames. Raises InvalidInput for missing
    columns, non-finite values, duplicate rows or unknown directions.
    """
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise InvalidInput(f"n_boot must be a positive integer, got {n_boot!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    scores = _checked(scores, "scores", SCORE_COLUMNS, keys=SCORE_COLUMNS[:3])
    extra = (ZERO_SHOT,) if isinstance(outcomes, pd.DataFrame) and ZERO_SHOT in outcomes.columns else ()
    outcomes = _checked(outcomes, "outcomes", OUTCOME_COLUMNS + extra, keys=OUTCOME_COLUMNS[:4])
    sign = {name: 1 if hib else -1
            for name, hib in _directions(sorted(scores["estimator"].unique()), directions).items()}
    cells = join(scores, outcomes)
    if ZERO_SHOT not in cells:
        cells[ZERO_SHOT] = np.nan
    cells = cells.melt(id_vars=["estimator", "method", "encoder", "task", "score", "n_seeds", ZERO_SHOT],
                       value_vars=list(OUTCOMES), var_name="outcome", value_name="y")
    tasks = sorted(cells["task"].unique())
    cluster_of = task_clusters(tasks, clusters)
    weights, datasets = resample_weights(tasks, cluster_of, n_boot, seed)
    column = {t: i for i, t in enumerate(tasks)}

    rows, sums = _encoder_groups(cells, sign, weights, column, len(datasets), reference, n_boot)
    for (outcome, method, group), block in cells.groupby(["outcome", "method", "task"], sort=True):
        if block["encoder"].nunique() < MIN_N:
            continue
        for name, (units, x, y, z, n_seeds) in _parts(block, "encoder").items():
            rows.append({"estimator": name, "outcome": outcome, "method": method, "group_kind": "task",
                         "group": group, **_point(x, y, z, n_seeds, sign[name], EXPECTED_SIGN[outcome])})

    groups = pd.DataFrame(rows, columns=COLUMNS)
    baselines = set(registered_baselines() if baselines is None else baselines)
    groups["baseline"] = groups["estimator"].isin(baselines)
    groups["higher_is_better"] = groups["estimator"].map(sign) > 0
    groups = groups.astype({c: object for c in _COUNTS}).fillna(_COUNTS)  # object: a bool never fills a float column
    groups = groups.astype({c: type(v) for c, v in _COUNTS.items()})
    groups["ref_p_holm"] = groups.groupby(list(_KEYS[1:]))["ref_p"].transform(holm)
    groups = groups.sort_values(list(_KEYS)).reset_index(drop=True)
    summary, stability = _summarise(groups, sums, sign, baselines, datasets, cluster_of)
    design = {"tasks": tasks, "datasets": {k: [t for t in tasks if cluster_of[t] == k] for k in datasets},
              "encoders": sorted(cells["encoder"].unique()), "methods": sorted(cells["method"].unique()),
              "seeds": sorted(outcomes["seed"].unique().tolist()), "n_boot": n_boot, "reference": reference,
              "groups": int(groups.loc[(groups["group_kind"] == "encoder") & (groups["n"] >= MIN_N),
                                       ["method", "group"]].drop_duplicates().shape[0]),
              "smallest_p": 2 / (n_boot + 1)}
    return Evaluation(groups, summary, stability, design)


def _encoder_groups(cells: pd.DataFrame, sign: dict, weights: np.ndarray, column: dict, k: int, reference: str,
                    n_boot: int) -> tuple[list[dict], dict]:
    """The rows of the encoder groups, and per (outcome, estimator) the sums over groups of the
    resampled oriented Spearman, Pearson, partial r and paired difference to the reference."""
    rows, sums, scored = [], {}, {}  # scored: an estimator's resampled score vector, shared by outcomes and methods
    for (outcome, method, group), block in cells.groupby(["outcome", "method", "encoder"], sort=True):
        parts = _parts(block, "task")
        ref = parts.get(reference)
        ref_rho = None if ref is None or len(ref[0]) < MIN_N else _spearman(
            sign[reference] * ref[1], EXPECTED_SIGN[outcome] * ref[2], weights[:, [column[t] for t in ref[0]]])
        shared = {}  # per task list: the weights and the outcome's (and acc_zs') resampled quantities
        for name, (units, x, y, z, n_seeds) in parts.items():
            d, e = sign[name], EXPECTED_SIGN[outcome]
            row = {"estimator": name, "outcome": outcome, "method": method, "group_kind": "encoder", "group": group,
                   **_point(x, y, z, n_seeds, d, e)}
            if len(x) >= MIN_N:
                if tuple(units) not in shared:
                    w = weights[:, [column[t] for t in units]]
                    vy = _Vector(e * y, w)
                    vz = _Vector(z, w) if len(x) > MIN_N and np.isfinite(z).all() else None
                    shared[tuple(units)] = w, vy, vz, None if vz is None else _corr(
                        vy.dev, vz.dev, w, vy.constant | vz.constant)
                w, vy, vz, r_yz = shared[tuple(units)]
                key = (name, group, tuple(units), tuple(x))
                vx = scored[key] if key in scored else scored.setdefault(key, _Vector(d * x, w))
                res = _resampled(vx, vy, vz, r_yz, w)
                row.update(_intervals(res, k), n_boot=n_boot,
                           boot_degenerate=int((vx.constant | vy.constant)[1 + k:].sum()),
                           **loto(x, y), loto_skill_signed=loto(x, y, d * e)["loto_skill"])
                total = sums.setdefault((outcome, name), {})
                for stat in _AGGREGATED:
                    if res[stat] is not None:
                        total[stat] = total.get(stat, 0) + res[stat]
                        total[f"n_{stat}"] = total.get(f"n_{stat}", 0) + 1
                if ref is not None and name != reference:
                    paired = _paired(units, x, y, ref, ref_rho, weights, column, res, d, sign[reference], e)
                    if paired is not None:
                        row.update(_comparison(*paired, k))
                        total["diff"] = total.get("diff", 0) + paired[1]
                        total["n_diff"] = total.get("n_diff", 0) + 1
            rows.append(row)
    return rows, sums


def join(scores: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Seed-averaged outcomes joined to scores on (encoder, task), one row per estimator x method x
    encoder x task that has both; ``n_seeds`` counts the seeds. Means are exact (``exact_mean``)."""
    values = [c for c in (*OUTCOMES, ZERO_SHOT) if c in outcomes.columns]
    means = (outcomes.groupby(["encoder", "method", "task"], sort=True)
             .agg(n_seeds=("seed", "size"), **{c: (c, exact_mean) for c in values}).reset_index())
    return scores.merge(means, on=["encoder", "task"], how="inner")


def exact_mean(values) -> float:
    """The nearest double of the exact mean of ``values`` (Fractions, or floats at their binary value)."""
    values = list(values)
    return float(sum(map(Fraction, values), Fraction(0)) / len(values))


def task_clusters(tasks, clusters: Mapping[str, str] | None = None) -> dict[str, str]:
    """Task -> the dataset its images come from: ``clusters[t]``, else the registry's ``Task.dataset``
    (class-subset tasks share their parent's), else the task itself."""
    from tasks import dataset_of

    clusters = clusters or {}
    return {t: str(clusters[t]) if t in clusters else dataset_of(t) for t in tasks}


def resample_weights(tasks, cluster_of: Mapping[str, str], n_boot: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Task weights, (1 + K + n_boot, T), and the K datasets (sorted).

    Row 0 is all ones (the point estimate); row 1 + k leaves out dataset k; each further row draws K
    datasets with replacement and weights every task by how often its dataset was drawn (the cluster
    bootstrap). The numpy Generator is seeded by ``seed`` and a CRC of the task -> dataset map."""
    datasets = sorted({cluster_of[t] for t in tasks})
    k = len(datasets)
    rng = np.random.default_rng([int(seed), zlib.crc32("\x1f".join(f"{t}\x1e{cluster_of[t]}" for t in tasks).encode())])
    draws = rng.integers(0, k, size=(n_boot, k)) + k * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    per_dataset = np.vstack([np.ones((1, k), dtype=int), 1 - np.eye(k, dtype=int), counts]).astype(float)
    return per_dataset[:, [datasets.index(cluster_of[t]) for t in tasks]], datasets


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


def bootstrap_p(resampled: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": 2 min(#(d* <= 0), #(d* >= 0)) over the B
    resamples, add-one smoothed, (2 (tail + 1) / (B + 1)), capped at 1: the smallest level whose
    percentile interval excludes 0."""
    tail = min((resampled <= 0).sum(), (resampled >= 0).sum())
    return min(1.0, 2 * (tail + 1) / (len(resampled) + 1))


def loto(x: np.ndarray, y: np.ndarray, direction: int = 0) -> dict:
    """Leave-one-task-out prediction of ``y`` from ``x`` (the IIMM paper's use: fit gain ~ score on
    tasks already fine-tuned, predict a new one).

    For each point i, least squares on the other points predicts yhat_i; with ``direction`` +1 or -1
    the slope is constrained to that sign (0 otherwise: the training mean). ``loto_mae`` = mean
    |y - yhat|; ``loto_skill`` = 1 - PRESS / PRESS_0, where PRESS = sum (y - yhat)^2 and PRESS_0 is
    the same sum for the leave-one-out mean forecast (= (n / (n - 1))^2 sum (y - mean y)^2): > 0 beats
    predicting the other tasks' mean, 0 ties it. NaN when y is constant.
    """
    n = len(x)
    keep = ~np.eye(n, dtype=bool)  # row i: every point but i
    xt, yt = (np.broadcast_to(v, (n, n))[keep].reshape(n, n - 1) for v in (x, y))
    mx, my = xt.mean(axis=1), yt.mean(axis=1)
    dx = xt - mx[:, None]
    slope = np.divide((dx * (yt - my[:, None])).sum(axis=1), (dx ** 2).sum(axis=1),
                      out=np.zeros(n), where=np.ptp(xt, axis=1) > 0)
    if direction:
        slope = np.where(slope * direction < 0, 0.0, slope)
    err = y - (my + slope * (x - mx))
    skill = 1 - (err ** 2).sum() / ((y - my) ** 2).sum() if np.ptp(y) > 0 else np.nan
    return {"loto_mae": np.abs(err).mean(), "loto_skill": skill}


# -- statistics of a sample x, y (n,) under rows of weights w (R, n) ----------------------------
# A resample is the original points repeated w[r, i] times, so each statistic is the statistic of
# that expanded sample; w = 1 everywhere is the point estimate. One code path serves both, and a
# resample costs a few (R, n) x (n, n) products instead of a sort.
class _Vector:
    """A vector v (n,) under rows of weights w (R, n): which rows draw a single distinct value
    (``constant``), and the weighted deviations and sums of squares of v (``dev``) and of its
    average ranks in the expanded sample (``rank_dev``)."""

    def __init__(self, v: np.ndarray, w: np.ndarray):
        values = np.unique(v)
        self.constant = (w @ (v[:, None] == values[None, :]) > 0).sum(axis=1) <= 1
        total = w.sum(axis=1)
        self.dev = _deviations(v, w, total)
        self.rank_dev = _deviations(_ranks(v, w), w, total)


def _deviations(a, w, total):
    with np.errstate(invalid="ignore"):  # a resample without any of the group's tasks: NaN, a constant row
        mean = (w @ a if a.ndim == 1 else np.einsum("ij,ij->i", w, a)) / total
    centred = a - mean[:, None]
    return centred, np.einsum("ij,ij,ij->i", w, centred, centred)


def _corr(a, b, w, constant):
    """Weighted Pearson r of two (deviations, sum of squares) pairs: sum w da db / sqrt(ss_a ss_b);
    0 on ``constant`` rows."""
    den = np.sqrt(a[1] * b[1])
    num = np.einsum("ij,ij,ij->i", w, a[0], b[0])
    return np.clip(np.divide(num, den, out=np.zeros(len(w)), where=~constant & (den > 0)), -1.0, 1.0)


def _ranks(x, w):
    """Average ranks in the expanded sample (ties share their mean rank, as scipy's rankdata):
    rank_i = #{points below x_i} + (#{points equal to x_i} + 1) / 2."""
    return w @ (x[:, None] < x[None, :]) + (w @ (x[:, None] == x[None, :]) + 1) / 2


def _constant(x, y, w):
    """Rows whose drawn points have a constant x or a constant y."""
    return _Vector(x, w).constant | _Vector(y, w).constant


def _pearson(x, y, w):
    """Pearson r = sum w dx dy / sqrt(sum w dx^2 sum w dy^2), deviations from weighted means; 0 on
    constant rows."""
    vx, vy = _Vector(x, w), _Vector(y, w)
    return _corr(vx.dev, vy.dev, w, vx.constant | vy.constant)


def _spearman(x, y, w):
    """Spearman rho: Pearson r of average ranks (Spearman 1904; ``scipy.stats.spearmanr``)."""
    vx, vy = _Vector(x, w), _Vector(y, w)
    return _corr(vx.rank_dev, vy.rank_dev, w, vx.constant | vy.constant)


def _kendall(x, y, w):
    """Kendall tau-b = (concordant - discordant) / sqrt(#pairs untied in x * #pairs untied in y),
    over pairs of the expanded sample (Kendall 1945; ``scipy.stats.kendalltau``)."""
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])

    def twice_sum_over_pairs(m):
        return ((w @ m) * w).sum(axis=1)

    den = np.sqrt(twice_sum_over_pairs(np.abs(sx)) * twice_sum_over_pairs(np.abs(sy)))
    return np.divide(twice_sum_over_pairs(sx * sy), den, out=np.zeros(len(w)), where=den > 0)


def _partial_from(rxy, rxz, ryz):
    """Partial correlation of x and y given z: (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)),
    the Pearson r of their residuals on z; 0 where x or y is (numerically) collinear with z."""
    den = np.sqrt(np.clip((1 - rxz ** 2) * (1 - ryz ** 2), 0, None))
    return np.clip(np.divide(rxy - rxz * ryz, den, out=np.zeros(len(rxy)), where=den > 1e-9), -1.0, 1.0)


def _partial(x, y, z, w):
    return _partial_from(_pearson(x, y, w), _pearson(x, z, w), _pearson(y, z, w))


def _point(x, y, z, n_seeds, direction: int, expected: int) -> dict:
    """Point statistics of one group; none below MIN_N points (they become NaN)."""
    n = len(x)
    out = {"n": n, "n_seeds_min": int(n_seeds.min()), "n_seeds_max": int(n_seeds.max())}
    if n < MIN_N:
        return out
    w = np.ones((1, n))
    vx, vy = _Vector(x, w), _Vector(y, w)
    constant = bool(vx.constant[0] or vy.constant[0])
    r = _corr(vx.dev, vy.dev, w, vx.constant | vy.constant)[0]
    rho = _corr(vx.rank_dev, vy.rank_dev, w, vx.constant | vy.constant)[0]
    tau = _kendall(x, y, w)[0]
    wtau = 0.0 if constant else _weightedtau(x, y).statistic
    same = direction == expected == 1
    wtau_signed = wtau if constant or same else _weightedtau(direction * x, expected * y).statistic
    r_score_zs = r_delta_zs = partial = np.nan
    if np.isfinite(z).all():
        vz = _Vector(z, w)
        r_score_zs, r_delta_zs = (_corr(v.dev, vz.dev, w, v.constant | vz.constant)[0] for v in (vx, vy))
        if n > MIN_N:
            partial = _partial_from(np.array([r]), np.array([r_score_zs]), np.array([r_delta_zs]))[0]
    with np.errstate(divide="ignore"):
        fisher = np.arctanh(r)
    ci = (np.nan, np.nan) if constant or n <= 3 else np.tanh(fisher + np.array([-_Z, _Z]) / np.sqrt(n - 3))
    o = direction * expected
    return {**out, "constant": constant, "pearson": r, "pearson_ci_lo": ci[0], "pearson_ci_hi": ci[1],
            "r2": r ** 2, **_line(x, y, r), "spearman": rho, "kendall": tau, "wtau": wtau, "partial_r": partial,
            "r_score_zs": r_score_zs, "r_delta_zs": r_delta_zs,
            "pearson_signed": o * r, "spearman_signed": o * rho, "kendall_signed": o * tau,
            "wtau_signed": wtau_signed, "partial_r_signed": o * partial}


def _line(x, y, r) -> dict:
    """Least squares y = intercept + slope x and the two-sided t-test of slope 0 (n - 2 degrees of
    freedom, t = r sqrt((n - 2) / (1 - r^2)); ``scipy.stats.linregress``); NaN when x is constant."""
    if np.ptp(x) == 0:
        return {"slope": np.nan, "intercept": np.nan, "p_value": np.nan}
    dx = x - x.mean()
    slope = (dx * (y - y.mean())).sum() / (dx ** 2).sum()
    df = len(x) - 2
    with np.errstate(divide="ignore"):
        t = r * np.sqrt(df / ((1 - r) * (1 + r)))
    return {"slope": slope, "intercept": y.mean() - slope * x.mean(), "p_value": 2 * special.stdtr(df, -abs(t))}


def _resampled(vx: _Vector, vy: _Vector, vz: _Vector | None, r_yz, w) -> dict:
    """Pearson, Spearman and partial r (None without ``vz``) of x and y on every row of ``w``."""
    constant = vx.constant | vy.constant
    out = {"pearson": _corr(vx.dev, vy.dev, w, constant), "spearman": _corr(vx.rank_dev, vy.rank_dev, w, constant)}
    out["partial"] = None if vz is None else _partial_from(
        out["pearson"], _corr(vx.dev, vz.dev, w, vx.constant | vz.constant), r_yz)
    return out


def _intervals(res: dict, k: int) -> dict:
    """95% percentile intervals over the bootstrap rows (those after the point and the k left-out rows)."""
    out = {}
    for stat, name in (("pearson", "pearson"), ("spearman", "spearman"), ("partial", "partial_r")):
        if res[stat] is not None:
            out[f"{name}_signed_lo"], out[f"{name}_signed_hi"] = np.percentile(res[stat][1 + k:], [2.5, 97.5])
    return out


def _comparison(n: int, diff: np.ndarray, k: int) -> dict:
    lo, hi = np.percentile(diff[1 + k:], [2.5, 97.5])
    return {"ref_n": n, "ref_diff": diff[0], "ref_diff_lo": lo, "ref_diff_hi": hi, "ref_p": bootstrap_p(diff[1 + k:])}


def _paired(units, x, y, ref, ref_rho, weights, column, res, d, d_ref, e):
    """Oriented Spearman of the estimator minus the reference's on their common tasks, every row
    (``res`` and ``ref_rho``: each one's on its own tasks, reused when those are the common ones).
    Returns (number of common tasks, differences), or None below MIN_N common tasks."""
    common, i, j = np.intersect1d(units, ref[0], return_indices=True)
    if len(common) < MIN_N:
        return None
    if len(common) == len(units) == len(ref[0]):
        return len(common), res["spearman"] - ref_rho
    wc = weights[:, [column[t] for t in common]]
    return len(common), _spearman(d * x[i], e * y[i], wc) - _spearman(d_ref * ref[1][j], e * y[i], wc)


def _parts(block: pd.DataFrame, unit: str) -> dict:
    """Per estimator (sorted): its units, scores, outcomes, zero-shot accuracies and seed counts."""
    block = block.sort_values(["estimator", unit])
    names = block["estimator"].to_numpy()
    columns = [block[c].to_numpy() for c in (unit, "score", "y", ZERO_SHOT, "n_seeds")]
    starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    return {names[a]: tuple(c[a:b].astype(float) if i else c[a:b] for i, c in enumerate(columns))
            for a, b in zip(starts, np.r_[starts[1:], len(names)])}


def _summarise(groups: pd.DataFrame, sums: dict, sign: dict, baselines: set, datasets: list, cluster_of: dict):
    """The summary and stability frames from the per-group rows and the summed resampled statistics."""
    k = len(datasets)
    enc = groups[(groups["group_kind"] == "encoder") & (groups["n"] >= MIN_N)]
    rows, stability = [], []
    for outcome in OUTCOMES:
        names = sorted(groups.loc[groups["outcome"] == outcome, "estimator"].unique())
        means = {name: {s: sums[(outcome, name)][s] / sums[(outcome, name)][f"n_{s}"]
                        for s in (*_AGGREGATED, "diff") if f"n_{s}" in sums.get((outcome, name), {})}
                 for name in names}
        ranked = [n for n in names if "spearman" in means[n]]
        rho = np.array([means[n]["spearman"] for n in ranked]).reshape(len(ranked), -1 if ranked else 0)
        ranks = 1 + (rho[None, :, :] > rho[:, None, :]).sum(axis=1)  # ties share the best rank
        rank_of = dict(zip(ranked, ranks))
        ref_p = {}
        for name in names:
            own = enc[(enc["outcome"] == outcome) & (enc["estimator"] == name)]
            m = means[name]
            row = {"outcome": outcome, "estimator": name, "baseline": name in baselines,
                   "higher_is_better": sign[name] > 0, "groups": len(own), "constant": int(own["constant"].sum()),
                   "kendall": own["kendall_signed"].mean(), "wtau": own["wtau_signed"].mean(),
                   "loto_skill_median": own["loto_skill_signed"].median(),
                   "loto_groups": int(own["loto_skill_signed"].notna().sum()),
                   "loto_positive": int((own["loto_skill_signed"] > 0).sum()),
                   "partial_groups": int(own["partial_r_signed"].notna().sum()),
                   "partial_positive": int((own["partial_r_signed"] > 0).sum())}
            for stat, label in (("spearman", "rho"), ("pearson", "pearson"), ("partial", "partial"),
                                ("diff", "ref_diff")):
                if stat in m:
                    row[label] = m[stat][0]
                    row[f"{label}_lo"], row[f"{label}_hi"] = np.percentile(m[stat][1 + k:], [2.5, 97.5])
            if "diff" in m:
                ref_p[name] = row["ref_p"] = bootstrap_p(m["diff"][1 + k:])
            if name in rank_of:
                r = rank_of[name]
                row.update(rank=r[0], rank_lo=np.percentile(r[1 + k:], 2.5, method="lower"),
                           rank_hi=np.percentile(r[1 + k:], 97.5, method="higher"),
                           lodo_rank_min=r[1:1 + k].min(), lodo_rank_max=r[1:1 + k].max())
                stability += [{"outcome": outcome, "left_out": d, "estimator": name,
                               "rho": means[name]["spearman"][1 + i],
                               "rank": r[1 + i], "tasks_left_out": sum(c == d for c in cluster_of.values())}
                              for i, d in enumerate(datasets)]
            rows.append(row)
        adjusted = dict(zip(ref_p, holm(list(ref_p.values()))))
        for row in rows:
            if row["outcome"] == outcome and row["estimator"] in adjusted:
                row["ref_p_holm"] = adjusted[row["estimator"]]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary = summary.sort_values(["outcome", "rank", "estimator"], na_position="last", ignore_index=True)
    stability = pd.DataFrame(stability, columns=STABILITY_COLUMNS).sort_values(
        ["outcome", "left_out", "rank", "estimator"], ignore_index=True)
    return summary, stability


# -- input checks -------------------------------------------------------------------------------
def _checked(df, name: str, columns, keys) -> pd.DataFrame:
    """A copy with string keys and finite values (Fractions kept exact, the rest as floats), or
    InvalidInput naming the first problem."""
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
        exact = df[c].map(lambda v: isinstance(v, Fraction)).to_numpy(dtype=bool)
        values = pd.to_numeric(df[c].where(~exact, 0.0), errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            first = df.loc[np.flatnonzero(bad)[0], keys].to_dict()
            raise InvalidInput(f"{name} has {int(bad.sum())} non-finite or non-numeric value(s) in {c!r}, "
                               f"first at {first}")
        df[c] = pd.Series([v if e else f for v, e, f in zip(df[c], exact, values)], dtype=object) if exact.any() \
            else values
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
