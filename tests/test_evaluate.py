"""benchmark.evaluation.tasks_protocol against hand-computed values, scipy, and brute-force recomputations."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.evaluation import tasks_protocol as ev
from benchmark.evaluation.tasks_protocol import (
    COLUMNS,
    STABILITY_COLUMNS,
    SUMMARY_COLUMNS,
    bootstrap_p,
    evaluate,
    holm,
    loto,
    resample_weights,
)
from estimators.errors import InvalidInput

UP = {"est": True, "iimm": True, "other": True, "down": False, "random": True, "twin": True}


def tables(scores: dict[str, list[float]], y, encoder="enc", method="full", tasks=None, seeds=(0,), zs=None):
    """Tables for one encoder: ``scores`` maps estimator -> score per task; every outcome is ``y``
    except ood_change = -y; ``zs``: the zero-shot accuracy column. Each seed gets y exactly."""
    tasks = tasks or [f"t{i:02d}" for i in range(len(y))]
    s = pd.DataFrame([(encoder, t, name, float(v)) for name, vals in scores.items()
                      for t, v in zip(tasks, vals)], columns=["encoder", "task", "estimator", "score"])
    o = pd.DataFrame([(encoder, method, t, seed, g, g, -g) for t, g in zip(tasks, y) for seed in seeds],
                     columns=["encoder", "method", "task", "seed", "id_gain", "id_gain_norm", "ood_change"])
    if zs is not None:
        o["acc_zs"] = [z for z in zs for _ in seeds]
    return s, o


def row(result, estimator="est", outcome="id_gain", kind="encoder", group="enc", method="full"):
    frame = result.groups
    sel = frame[(frame.estimator == estimator) & (frame.outcome == outcome) & (frame.group_kind == kind)
                & (frame.group == group) & (frame.method == method)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def summary_row(result, estimator="est", outcome="id_gain"):
    sel = result.summary[(result.summary.estimator == estimator) & (result.summary.outcome == outcome)]
    assert len(sel) == 1
    return sel.iloc[0]


def brute_loto(x, y, direction=0):
    """Leave-one-out by an explicit loop with np.polyfit (slope clipped to the direction)."""
    pred = []
    for i in range(len(x)):
        xs, ys = np.delete(x, i), np.delete(y, i)
        slope, intercept = np.polyfit(xs, ys, 1) if np.ptp(xs) > 0 else (0.0, ys.mean())
        if direction and slope * direction < 0:
            slope, intercept = 0.0, ys.mean()
        pred.append(intercept + slope * x[i])
    press = ((y - np.array(pred)) ** 2).sum()
    press0 = sum((y[i] - np.delete(y, i).mean()) ** 2 for i in range(len(y)))
    return 1 - press / press0


# -- point statistics ----------------------------------------------------------------------------
def test_perfectly_linear_fit_is_exact():
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.7])
    result = evaluate(*tables({"est": x}, 2 * x + 1), UP, n_boot=200)
    r = row(result)
    assert list(result.groups.columns) == COLUMNS and list(result.summary.columns) == SUMMARY_COLUMNS
    assert r.n == 6 and not r.constant
    for name in ("pearson", "r2", "spearman", "kendall", "wtau", "loto_skill", "loto_skill_signed",
                 "pearson_signed_lo", "spearman_signed_lo"):
        assert r[name] == pytest.approx(1.0), name
    assert (r.slope, r.intercept) == (pytest.approx(2.0), pytest.approx(1.0))
    assert r.loto_mae == pytest.approx(0.0, abs=1e-12) and r.p_value < 1e-6
    # ood_change = -(2x + 1): raw statistics keep the sign; the oriented ones expect forgetting (-1)
    forgetting = row(result, outcome="ood_change")
    assert (forgetting.pearson, forgetting.slope, forgetting.kendall) == (
        pytest.approx(-1.0), pytest.approx(-2.0), pytest.approx(-1.0))
    assert forgetting.spearman_signed == pytest.approx(1.0) and forgetting.wtau_signed == pytest.approx(1.0)
    assert forgetting.loto_skill_signed == pytest.approx(1.0)


def test_small_hand_computed_example():
    # x = ranks, y swaps neighbours twice: 8 concordant, 2 discordant pairs -> tau = 0.6;
    # sum d^2 = 4 -> rho = 1 - 6*4 / (5*24) = 0.8 = Pearson (values are ranks);
    # Sxy = 8, Sxx = 10 -> slope 0.8, intercept 3 - 0.8*3 = 0.6; Fisher z: tanh(atanh .8 -+ 1.96/sqrt 2).
    x, y = [1, 2, 3, 4, 5], [1, 3, 2, 5, 4]
    r = row(evaluate(*tables({"est": x}, y), UP, n_boot=50))
    assert (r.pearson, r.spearman, r.kendall, r.r2) == (pytest.approx(0.8), pytest.approx(0.8),
                                                        pytest.approx(0.6), pytest.approx(0.64))
    assert (r.slope, r.intercept) == (pytest.approx(0.8), pytest.approx(0.6))
    assert r.pearson_ci_lo == pytest.approx(-0.27964, abs=1e-4)
    assert r.pearson_ci_hi == pytest.approx(0.98620, abs=1e-4)
    assert r.p_value == pytest.approx(stats.linregress(x, y).pvalue)  # t = 0.8 sqrt(3 / 0.36), 3 df
    assert r.p_value == pytest.approx(0.104088, abs=1e-5)
    assert r.wtau == pytest.approx(stats.weightedtau(x, y).statistic)


def test_statistics_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, 12).astype(float), rng.integers(0, 4, 12) + 0.5 * rng.random(12)
    x[0] = x[1]  # make sure there is a tie
    r = row(evaluate(*tables({"est": x}, y), UP, n_boot=50))
    line = stats.linregress(x, y)
    assert r.pearson == pytest.approx(stats.pearsonr(x, y).statistic)
    assert r.spearman == pytest.approx(stats.spearmanr(x, y).statistic)
    assert r.kendall == pytest.approx(stats.kendalltau(x, y).statistic)  # tau-b
    assert r.wtau == pytest.approx(stats.weightedtau(x, y).statistic)
    assert (r.slope, r.intercept, r.p_value) == (pytest.approx(line.slope), pytest.approx(line.intercept),
                                                 pytest.approx(line.pvalue))


def test_tied_deltas_tie_exactly():
    # id_gain from counts over 500 test images: 267/500 - 220/500 and 91/500 - 44/500 are both 47/500,
    # but 0.534 - 0.440 = 0.09400000000000003 != 0.094 = 0.182 - 0.088 in double precision
    zs = [Fraction(220, 500), Fraction(44, 500), Fraction(100, 500), Fraction(300, 500), Fraction(10, 500)]
    ft = [Fraction(267, 500), Fraction(91, 500), Fraction(160, 500), Fraction(330, 500), Fraction(40, 500)]
    gains = [b - a for a, b in zip(zs, ft)]
    naive = [float(b) - float(a) for a, b in zip(zs, ft)]
    assert naive[0] != naive[1] and gains[0] == gains[1]
    exact = np.array([float(g) for g in gains])
    x = np.array([0.3, 0.1, 0.5, 0.2, 0.4])
    assert stats.spearmanr(x, naive).statistic != pytest.approx(stats.spearmanr(x, exact).statistic)
    s, o = tables({"est": x}, [0.0] * 5)
    o["id_gain"] = gains
    r = row(evaluate(s, o, UP, n_boot=50))
    assert r.spearman == pytest.approx(stats.spearmanr(x, exact).statistic, abs=1e-12)
    assert r.kendall == pytest.approx(stats.kendalltau(x, exact).statistic, abs=1e-12)
    assert r.wtau == pytest.approx(stats.weightedtau(x, exact).statistic, abs=1e-12)


def test_seeds_are_averaged_exactly():
    # task a: seeds 1/10 and 2/10 (mean 3/20); task b: 3/20 twice. In floats (0.1 + 0.2) / 2 != 0.15
    assert (0.1 + 0.2) / 2 != 0.15
    s, o = tables({"est": [1.0, 2.0, 3.0, 4.0]}, [0.0] * 4, seeds=(0, 1))
    o["id_gain"] = [Fraction(1, 10), Fraction(2, 10), Fraction(3, 20), Fraction(3, 20),
                    Fraction(1, 2), Fraction(1, 2), Fraction(1, 5), Fraction(1, 5)]
    r = row(evaluate(s, o, UP, n_boot=20))
    y = [0.15, 0.15, 0.5, 0.2]
    assert r.spearman == pytest.approx(stats.spearmanr([1, 2, 3, 4], y).statistic, abs=1e-12)
    assert r.n_seeds_min == r.n_seeds_max == 2


def test_weighted_tau_anchor_values():
    # scipy.stats.weightedtau with its defaults: swapping the lowest two of 5 -> 0.901, top and bottom -> -0.526
    y = [1, 2, 3, 4, 5]
    result = evaluate(*tables({"est": [2, 1, 3, 4, 5], "other": [5, 2, 3, 4, 1]}, y), UP, n_boot=20)
    assert row(result).wtau == pytest.approx(0.9015, abs=1e-4)
    assert row(result, "other").wtau == pytest.approx(-0.5255, abs=1e-4)


def test_constant_scores_give_zero_and_a_flag():
    y = [1.0, 2.0, 3.0, 4.0]
    result = evaluate(*tables({"est": [0.5] * 4}, y), UP, n_boot=100)
    r = row(result)
    assert np.isnan(stats.weightedtau([0.5] * 4, y).statistic)  # what scipy does
    assert r.constant and r.wtau == 0 and r.wtau_signed == 0
    assert (r.pearson, r.spearman, r.kendall, r.r2) == (0, 0, 0, 0)
    assert np.isnan([r.slope, r.intercept, r.p_value, r.pearson_ci_lo, r.pearson_ci_hi]).all()
    assert r.boot_degenerate == r.n_boot == 100 and r.spearman_signed_lo == r.spearman_signed_hi == 0
    # a constant score predicts the mean of the other tasks: [3, 8/3, 7/3, 2]; errors [-2, -2/3, 2/3, 2]
    # -> MAE 4/3; that *is* the leave-one-out mean forecast, so the skill is exactly 0
    assert (r.loto_mae, r.loto_skill, r.loto_skill_signed) == (pytest.approx(4 / 3), pytest.approx(0), pytest.approx(0))
    assert summary_row(result).constant == 1 and summary_row(result).rho == 0


def test_constant_outcome_gives_zero_and_a_flag():
    r = row(evaluate(*tables({"est": [1.0, 3.0, 2.0]}, [0.2] * 3), UP, n_boot=20))
    assert r.constant and r.wtau == 0 and r.pearson == 0
    assert (r.slope, r.intercept) == (pytest.approx(0.0), pytest.approx(0.2))
    assert np.isnan(r.loto_skill)


def test_direction_flip():
    x = np.array([0.3, 0.1, 0.4, 0.9, 0.2, 0.6])
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    result = evaluate(*tables({"est": x, "down": -x}, y), UP, n_boot=20)
    up, down = row(result), row(result, "down")
    assert up.higher_is_better and not down.higher_is_better
    for k in ("pearson", "spearman", "kendall"):
        assert down[k] == pytest.approx(-up[k]) and down[f"{k}_signed"] == pytest.approx(up[k])
    # weighted tau is not odd: the signed value is recomputed on the negated score
    assert down.wtau == pytest.approx(stats.weightedtau(-x, y).statistic)
    assert down.wtau_signed == pytest.approx(stats.weightedtau(x, y).statistic) == pytest.approx(up.wtau)
    assert stats.weightedtau(-x, y).statistic != pytest.approx(-stats.weightedtau(x, y).statistic)
    # ood_change (= -y here) is oriented towards forgetting: weighted tau of (score, -ood_change)
    assert row(result, outcome="ood_change").wtau_signed == pytest.approx(stats.weightedtau(x, y).statistic)
    assert row(result, "down", outcome="ood_change").spearman_signed == pytest.approx(up.spearman)


def test_directions_from_the_registry():
    s, o = tables({"modality_gap": [1, 2, 3, 4], "iimm": [1, 2, 4, 3], "random": [4, 1, 2, 3]}, [1, 2, 3, 4])
    result = evaluate(s, o, n_boot=20)
    assert not row(result, "modality_gap").higher_is_better and row(result, "iimm").higher_is_better
    assert row(result, "modality_gap").pearson_signed == pytest.approx(-1.0)
    assert row(result, "random").baseline and row(result, "modality_gap").baseline and not row(result, "iimm").baseline
    with pytest.raises(InvalidInput, match="not_an_estimator"):
        evaluate(*tables({"not_an_estimator": [1, 2, 3]}, [1, 2, 3]), n_boot=20)


def test_partial_correlation_is_the_correlation_of_residuals():
    rng = np.random.default_rng(4)
    zs = rng.random(9)
    x, y = zs + rng.normal(0, 0.3, 9), -zs + rng.normal(0, 0.3, 9)
    result = evaluate(*tables({"est": x, "down": x}, y, zs=zs), UP, n_boot=50)

    def residual(v):
        design = np.column_stack([np.ones(9), zs])
        return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]

    expected = stats.pearsonr(residual(x), residual(y)).statistic
    r, down = row(result), row(result, "down")
    assert r.partial_r == pytest.approx(expected) and r.partial_r_signed == pytest.approx(expected)
    assert down.partial_r_signed == pytest.approx(-expected)
    assert (r.r_score_zs, r.r_delta_zs) == (pytest.approx(stats.pearsonr(x, zs).statistic),
                                           pytest.approx(stats.pearsonr(y, zs).statistic))
    assert row(result, outcome="ood_change").partial_r_signed == pytest.approx(expected)  # -(-y), oriented
    assert summary_row(result).partial == pytest.approx(expected)
    assert summary_row(result).partial_positive == int(expected > 0) and summary_row(result).partial_groups == 1
    # without acc_zs (or with 3 tasks) there is no partial correlation
    assert np.isnan(row(evaluate(*tables({"est": x}, y), UP, n_boot=20)).partial_r)
    assert np.isnan(row(evaluate(*tables({"est": x[:3]}, y[:3], zs=zs[:3]), UP, n_boot=20)).partial_r)


# -- resampling -----------------------------------------------------------------------------------
def test_resample_statistics_are_those_of_the_expanded_sample():
    # a resample drawing task i w_i times has the statistics of np.repeat(x, w) (scipy's definitions)
    rng = np.random.default_rng(5)
    x, y, z = rng.integers(0, 4, 7).astype(float), rng.normal(size=7), rng.normal(size=7)
    w = rng.multinomial(7, np.full(7, 1 / 7), size=20).astype(float)
    w = w[[len(np.unique(np.repeat(x, c.astype(int)))) > 1 for c in w]]
    pairs = ((ev._pearson, stats.pearsonr), (ev._spearman, stats.spearmanr), (ev._kendall, stats.kendalltau))
    for f, ref in pairs:
        expected = [ref(np.repeat(x, c.astype(int)), np.repeat(y, c.astype(int))).statistic for c in w]
        np.testing.assert_allclose(f(x, y, w), expected, atol=1e-12, err_msg=f.__name__)

    def partial(c):
        xs, ys, zs = (np.repeat(v, c.astype(int)) for v in (x, y, z))
        design = np.column_stack([np.ones(len(zs)), zs])
        res = [v - design @ np.linalg.lstsq(design, v, rcond=None)[0] for v in (xs, ys)]
        return stats.pearsonr(*res).statistic

    np.testing.assert_allclose(ev._partial(x, y, z, w), [partial(c) for c in w], atol=1e-9)


def test_cluster_resamples_keep_class_subset_tasks_together():
    tasks = ["a1", "a2", "a3", "b", "c"]
    cluster_of = {"a1": "A", "a2": "A", "a3": "A", "b": "B", "c": "C"}
    w, datasets = resample_weights(tasks, cluster_of, 500, seed=1)
    assert datasets == ["A", "B", "C"] and w.shape == (1 + 3 + 500, 5)
    assert (w[0] == 1).all()
    np.testing.assert_array_equal(w[1:4], [[0, 0, 0, 1, 1], [1, 1, 1, 0, 1], [1, 1, 1, 1, 0]])  # one left out
    boot = w[4:]
    assert (boot[:, 0] == boot[:, 1]).all() and (boot[:, 1] == boot[:, 2]).all()  # A's tasks go together
    assert (boot[:, [0, 3, 4]].sum(axis=1) == 3).all()  # 3 datasets drawn per resample
    np.testing.assert_array_equal(resample_weights(tasks, cluster_of, 500, seed=1)[0], w)  # seeded


def test_aggregate_interval_rank_band_and_lodo_by_brute_force():
    # two encoders share the task list; cifar10 and its animal subset form one cluster (Task.dataset)
    rng = np.random.default_rng(7)
    tasks = ["cifar10", "cifar10_animals", "digits", "mnist", "notmnist", "gtsrb"]
    y = {e: rng.normal(size=6) for e in ("e1", "e2")}
    score = {(name, e): y[e] + rng.normal(0, noise, 6)
             for e in ("e1", "e2") for name, noise in (("est", 0.5), ("iimm", 1.0), ("other", 3.0))}
    parts = [tables({n: score[(n, e)] for n in ("est", "iimm", "other")}, y[e], encoder=e, tasks=tasks)
             for e in ("e1", "e2")]
    s, o = (pd.concat(p, ignore_index=True) for p in zip(*parts))
    result = evaluate(s, o, UP, n_boot=300, seed=3)
    assert result.design["datasets"]["cifar10"] == ["cifar10", "cifar10_animals"] and result.design["groups"] == 2
    cluster_of = {t: "cifar10" if t.startswith("cifar10") else t for t in sorted(tasks)}
    w, datasets = resample_weights(sorted(tasks), cluster_of, 300, 3)
    order = np.argsort(tasks)  # weights are in sorted-task order

    def aggregate(name, c):
        keep = c[np.argsort(order)].astype(int)  # counts in the original task order
        return np.mean([0.0 if len(set(np.repeat(y[e], keep))) < 2 or len(set(np.repeat(score[(name, e)], keep))) < 2
                        else stats.spearmanr(np.repeat(score[(name, e)], keep), np.repeat(y[e], keep)).statistic
                        for e in ("e1", "e2")])

    names = ["est", "iimm", "other"]
    values = np.array([[aggregate(n, c) for c in w] for n in names])  # (3, 1 + K + B)
    k = len(datasets)
    ranks = 1 + (values[None, :, :] > values[:, None, :]).sum(axis=1)
    for i, name in enumerate(names):
        got = summary_row(result, name)
        assert got.rho == pytest.approx(values[i, 0], abs=1e-12)
        expected = tuple(np.percentile(values[i, 1 + k:], [2.5, 97.5]))
        assert (got.rho_lo, got.rho_hi) == pytest.approx(expected, abs=1e-12)
        assert (got.rank_lo, got.rank_hi) == (np.percentile(ranks[i, 1 + k:], 2.5, method="lower"),
                                              np.percentile(ranks[i, 1 + k:], 97.5, method="higher"))
        assert (got["rank"], got.lodo_rank_min, got.lodo_rank_max) == (
            ranks[i, 0], ranks[i, 1:1 + k].min(), ranks[i, 1:1 + k].max())
        lodo = result.stability[(result.stability.estimator == name) & (result.stability.outcome == "id_gain")]
        assert list(lodo.left_out) == datasets and list(lodo.columns) == STABILITY_COLUMNS
        np.testing.assert_allclose(lodo.rho, values[i, 1:1 + k], atol=1e-12)
        if name != "iimm":  # paired difference on the same resamples
            diff = values[i] - values[names.index("iimm")]
            assert got.ref_diff == pytest.approx(diff[0], abs=1e-12)
            assert got.ref_p == pytest.approx(bootstrap_p(diff[1 + k:]))
    assert list(lodo.tasks_left_out) == [2, 1, 1, 1, 1]


def test_outlier_group_cannot_dominate_the_ranking_statistics():
    # four groups predict well; in a fifth one task has an extreme score, and LOTO there is far below 0
    rng = np.random.default_rng(8)
    groups = []
    for e in range(5):
        y = rng.normal(size=8)
        x = y + rng.normal(0, 0.3, 8)
        if e == 4:
            x[0] = 1000.0
        groups.append(tables({"est": x}, y, encoder=f"e{e}"))
    s, o = (pd.concat(p, ignore_index=True) for p in zip(*groups))
    result = evaluate(s, o, UP, n_boot=50)
    skills = [brute_loto(g[0].score.to_numpy(), g[1].id_gain.to_numpy(), 1) for g in groups]
    assert skills[4] < -5 and min(skills[:4]) > 0
    got = summary_row(result)
    assert got.loto_skill_median == pytest.approx(np.median(skills))  # > 0: one group does not drag it down
    assert got.loto_positive == 4 and got.loto_groups == 5
    rhos = [stats.spearmanr(g[0].score, g[1].id_gain).statistic for g in groups]
    assert got.rho == pytest.approx(np.mean(rhos))


def test_degenerate_resamples_are_counted():
    # with 3 datasets a resample is constant iff it draws one of them 3 times: P = 3/27 = 1/9
    r = row(evaluate(*tables({"est": [1.0, 2.0, 4.0]}, [3.0, 1.0, 2.0]), UP, n_boot=900))
    assert 60 <= r.boot_degenerate <= 140
    assert np.isnan(r.pearson_ci_lo)  # Fisher interval needs n > 3


def test_resamples_are_seeded_and_rows_independent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10)
    s, o = tables({"est": x, "iimm": x + rng.normal(size=10)}, x + rng.normal(size=10))
    a, b, c = (evaluate(s, o, UP, n_boot=300, seed=seed) for seed in (7, 7, 8))
    pd.testing.assert_frame_equal(a.groups, b.groups)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    boot = ["pearson_signed_lo", "pearson_signed_hi", "spearman_signed_lo", "spearman_signed_hi", "ref_diff_lo"]
    assert not np.allclose(a.groups[boot].to_numpy(float), c.groups[boot].to_numpy(float), equal_nan=True)
    r = row(a)
    assert r.n_boot == 300 and r.pearson_signed_lo < r.pearson < r.pearson_signed_hi
    # dropping an estimator leaves the other's intervals unchanged
    alone = evaluate(s[s.estimator == "est"], o, UP, n_boot=300, seed=7)
    pd.testing.assert_series_equal(row(alone)[boot[:4]], r[boot[:4]], check_names=False)


# -- prediction, comparison, multiplicity ---------------------------------------------------------
def test_loto_hand_computed():
    # x = 0..3, y = [0, 2, 1, 3]; held-out predictions 1, 5/7, 16/7, 2 -> errors -1, 9/7, -9/7, 1:
    # MAE = 8/7, PRESS = 260/49; the leave-one-out means [2, 4/3, 5/3, 1] give PRESS_0 = 80/9
    # (= (4/3)^2 x SS 5) -> skill = 1 - (260/49) / (80/9) = 79/196
    x, y = np.arange(4.0), np.array([0.0, 2.0, 1.0, 3.0])
    got = loto(x, y)
    assert (got["loto_mae"], got["loto_skill"]) == (pytest.approx(8 / 7), pytest.approx(79 / 196))
    # held to a negative slope, every fold predicts its training mean: the skill is 0
    assert loto(x, y, -1)["loto_skill"] == pytest.approx(0.0, abs=1e-12)


def test_loto_matches_an_explicit_loop():
    rng = np.random.default_rng(11)
    for _ in range(5):
        x, y = rng.normal(size=9), rng.normal(size=9)
        for direction in (0, 1, -1):
            assert loto(x, y, direction)["loto_skill"] == pytest.approx(brute_loto(x, y, direction))


@pytest.mark.parametrize("p, expected", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.01, 0.02, 0.03], [0.03, 0.04, 0.04]),
    ([0.5, np.nan, 0.2], [0.5, np.nan, 0.4]),  # NaN is not a test: m = 2
    ([0.6, 0.9], [1.0, 1.0]),
    ([], []),
])
def test_holm_known_values(p, expected):
    np.testing.assert_allclose(holm(p), expected)


def test_bootstrap_p_values():
    # 9 resamples: 1 at or below 0 -> 2 (1 + 1) / 10; none -> the floor 2 / 10; balanced -> 1
    assert bootstrap_p(np.array([-0.1, 0.2, 0.3, 0.1, 0.5, 0.4, 0.2, 0.3, 0.6])) == pytest.approx(0.4)
    assert bootstrap_p(np.full(9, 0.5)) == pytest.approx(0.2)
    assert bootstrap_p(np.array([-1.0, 1.0] * 4 + [0.0])) == 1.0


def test_paired_comparison_with_iimm():
    rng = np.random.default_rng(2)
    y = np.linspace(0, 1, 12)
    s, o = tables({"iimm": y + rng.normal(0, 0.4, 12), "est": y + rng.normal(0, 0.01, 12),
                   "other": rng.normal(size=12), "down": -y}, y)
    iimm_scores = s.loc[s.estimator == "iimm", "score"]
    s = pd.concat([s, s[s.estimator == "iimm"].assign(estimator="twin")])
    result = evaluate(s, o, UP, n_boot=400)
    best, down, twin, ref = (row(result, e) for e in ("est", "down", "twin", "iimm"))
    expected = 1 - stats.spearmanr(iimm_scores, y).statistic
    assert best.ref_diff == pytest.approx(expected) and best.ref_diff_lo > 0 and best.ref_p < 0.05
    assert down.ref_diff == pytest.approx(expected)  # signed: -(-1) for a lower-is-better estimator
    assert twin.ref_diff == twin.ref_diff_lo == twin.ref_diff_hi == 0 and twin.ref_p == 1
    assert ref.ref_n == 0 and np.isnan([ref.ref_diff, ref.ref_p, ref.ref_p_holm]).all()
    family = result.groups[(result.groups.group_kind == "encoder") & (result.groups.outcome == "id_gain")
                           & (result.groups.estimator != "iimm")]
    assert (family.ref_n == 12).all() and (family.ref_p_holm >= family.ref_p).all()
    assert row(result, "other").ref_diff < 0
    assert np.isnan(summary_row(result, "iimm").ref_p) and summary_row(result).ref_diff == pytest.approx(expected)


def test_holm_can_reject_with_the_default_resamples():
    # 18 estimators against iimm (iimm = y): one perfectly reversed, 17 noise; 8 clusters, 2 groups.
    # The reversed one is worse in every resample that draws 2+ datasets (all but ~8 / 8^8 of them):
    # p = 2 / 10000, x 18 (Holm) = 0.0036 < 0.05
    rng = np.random.default_rng(9)
    parts = []
    for e in range(2):
        y = rng.normal(size=8)
        names = {"iimm": y, "worse": -y, **{f"noise{i}": rng.normal(size=8) for i in range(17)}}
        parts.append(tables(names, y, encoder=f"e{e}"))
    s, o = (pd.concat(p, ignore_index=True) for p in zip(*parts))
    directions = {n: True for n in s.estimator.unique()}
    got = summary_row(evaluate(s, o, directions, seed=1), "worse")
    assert got.ref_diff == pytest.approx(-2.0) and got.ref_p == pytest.approx(2 / 10000)
    assert got.ref_p_holm == pytest.approx(18 * 2 / 10000) and got.ref_p_holm < 0.05


# -- partial data, bad input ----------------------------------------------------------------------
def test_partial_results_and_seed_averaging():
    y = np.array([0.1, 0.5, 0.3, 0.9])
    parts = [tables({"est": 2 * y, "iimm": y}, y, encoder=e, tasks=["a", "b", "c", "d"], seeds=(0, 1))
             for e in ("e1", "e2", "e3")]
    s = pd.concat([p[0] for p in parts], ignore_index=True)
    o = pd.concat([p[1] for p in parts], ignore_index=True)
    o.loc[o.seed == 0, "id_gain"] += 0.2  # seeds 0.2 apart: the mean is y + 0.1
    o = o[~((o.encoder == "e1") & (o.seed == 1) & (o.task == "a"))]  # one seed missing
    o = o[~((o.encoder == "e2") & o.task.isin(["a", "b"]))]  # e2 has only 2 tasks fine-tuned
    s = s[~((s.encoder == "e3") & (s.task == "d") & (s.estimator == "est"))]  # one score missing
    result = evaluate(s, o, UP, n_boot=50)
    e1, e2, e3 = (row(result, group=g) for g in ("e1", "e2", "e3"))
    assert (e1.n, e1.n_seeds_min, e1.n_seeds_max) == (4, 1, 2)
    assert row(result, group="e3", outcome="id_gain_norm").slope == pytest.approx(0.5)
    assert (e3.n, e3.slope, e3.ref_n) == (3, pytest.approx(0.5), 3) and e3.ref_diff == 0  # common tasks a, b, c
    assert e2.n == 2 and not e2.constant and e2.n_boot == 0 and e2.ref_n == 0
    assert e2[["pearson", "wtau", "slope", "loto_skill", "pearson_signed_lo", "ref_diff"]].isna().all()
    assert summary_row(result).groups == 2  # e2's group is too small to count
    # task groups need 3 encoders: only tasks c and d have them; on d, "est" lacks e3's score
    task_rows = result.groups[result.groups.group_kind == "task"]
    assert sorted(task_rows.group.unique()) == ["c", "d"]
    assert row(result, kind="task", group="d").n == 2 and row(result, "iimm", kind="task", group="d").n == 3
    assert task_rows.n_boot.eq(0).all() and task_rows.loto_skill.isna().all()


@pytest.mark.parametrize("mutate, message", [
    (lambda s, o: (s.drop(columns="score"), o), "scores is missing column"),
    (lambda s, o: (s, o.drop(columns=["ood_change", "seed"])), "outcomes is missing column"),
    (lambda s, o: (s.assign(score=[np.nan, 1, 2]), o), "non-finite"),
    (lambda s, o: (s, o.assign(id_gain=[0.1, np.inf, 0.2])), "non-finite"),
    (lambda s, o: (s.assign(score=["a", 1, 2]), o), "non-numeric"),
    (lambda s, o: (pd.concat([s, s.iloc[:1]]), o), "duplicate"),
    (lambda s, o: (s.assign(task=[None, "t01", "t02"]), o), "missing value"),
    (lambda s, o: (s.to_dict(), o), "DataFrame"),
])
def test_bad_input_is_one_clear_line(mutate, message):
    s, o = mutate(*tables({"est": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0]))
    with pytest.raises(InvalidInput, match=message) as err:
        evaluate(s, o, UP, n_boot=10)
    assert "\n" not in str(err.value)


def test_bad_arguments():
    s, o = tables({"est": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0])
    with pytest.raises(InvalidInput, match="no entry"):
        evaluate(s, o, {"other": True})
    with pytest.raises(InvalidInput, match="n_boot"):
        evaluate(s, o, UP, n_boot=0)
    with pytest.raises(InvalidInput, match="seed"):
        evaluate(s, o, UP, seed=-1)


def test_empty_join_gives_empty_frames():
    s, o = tables({"est": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0])
    result = evaluate(s, o.assign(encoder="elsewhere"), UP, n_boot=10)
    assert result.groups.empty and list(result.groups.columns) == COLUMNS
    assert result.summary.empty and result.stability.empty
