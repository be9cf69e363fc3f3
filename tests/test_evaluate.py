"""benchmark.evaluate against hand-computed values, and against scipy where scipy is the definition."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark import evaluate as ev
from benchmark.evaluate import COLUMNS, evaluate, holm, loto, summarise
from estimators.errors import InvalidInput

UP = {"est": True, "iimm": True, "other": True, "down": False, "random": True}


def tables(scores: dict[str, list[float]], y, encoder="enc", method="full", tasks=None, seeds=(0,)):
    """Tables for one encoder: ``scores`` maps estimator -> score per task; every outcome is ``y``
    except ood_change = -y. Each seed gets y exactly (its mean stays y)."""
    y = np.asarray(y, dtype=float)
    tasks = tasks or [f"t{i:02d}" for i in range(len(y))]
    s = pd.DataFrame([(encoder, t, name, float(v)) for name, vals in scores.items()
                      for t, v in zip(tasks, vals)], columns=["encoder", "task", "estimator", "score"])
    o = pd.DataFrame([(encoder, method, t, seed, g, g, -g) for t, g in zip(tasks, y) for seed in seeds],
                     columns=["encoder", "method", "task", "seed", "id_gain", "id_gain_norm", "ood_change"])
    return s, o


def row(frame, estimator="est", outcome="id_gain", kind="encoder", group="enc", method="full"):
    sel = frame[(frame.estimator == estimator) & (frame.outcome == outcome) & (frame.group_kind == kind)
                & (frame.group == group) & (frame.method == method)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_perfectly_linear_fit_is_exact():
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.7])
    out = evaluate(*tables({"est": x}, 2 * x + 1), UP, n_boot=200)
    r = row(out)
    assert list(out.columns) == COLUMNS
    assert r.n == 6 and not r.constant
    for name in ("pearson", "r2", "spearman", "kendall", "wtau", "loto_r2", "pearson_boot_lo"):
        assert r[name] == pytest.approx(1.0), name
    assert (r.slope, r.intercept) == (pytest.approx(2.0), pytest.approx(1.0))
    assert r.loto_mae == pytest.approx(0.0, abs=1e-12) and r.p_value < 1e-6
    forgetting = row(out, outcome="ood_change")  # ood_change = -(2x + 1): the raw sign is kept
    assert (forgetting.pearson, forgetting.slope, forgetting.kendall) == (
        pytest.approx(-1.0), pytest.approx(-2.0), pytest.approx(-1.0))


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


def test_resample_statistics_are_those_of_the_expanded_sample():
    # a resample drawing task i w_i times has the statistics of np.repeat(x, w) (scipy's definitions)
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 4, 7).astype(float), rng.normal(size=7)
    w = rng.multinomial(7, np.full(7, 1 / 7), size=20)
    w = w[[len(np.unique(np.repeat(x, c))) > 1 for c in w]]
    pairs = ((ev._pearson, stats.pearsonr), (ev._spearman, stats.spearmanr), (ev._kendall, stats.kendalltau))
    for f, ref in pairs:
        expected = [ref(np.repeat(x, c), np.repeat(y, c)).statistic for c in w]
        np.testing.assert_allclose(f(x, y, w), expected, atol=1e-12, err_msg=f.__name__)


def test_weighted_tau_anchor_values():
    # anchors.md section 3 (scipy defaults): swapping the lowest two of 5 -> 0.901, top and bottom -> -0.526
    y = [1, 2, 3, 4, 5]
    s, o = tables({"est": [2, 1, 3, 4, 5], "other": [5, 2, 3, 4, 1]}, y)
    out = evaluate(s, o, UP, n_boot=20)
    assert row(out).wtau == pytest.approx(0.9015, abs=1e-4)
    assert row(out, "other").wtau == pytest.approx(-0.5255, abs=1e-4)


def test_constant_scores_give_zero_and_a_flag():
    y = [1.0, 2.0, 3.0, 4.0]
    out = evaluate(*tables({"est": [0.5] * 4}, y), UP, n_boot=100)
    r = row(out)
    assert np.isnan(stats.weightedtau([0.5] * 4, y).statistic)  # what scipy does
    assert r.constant and r.wtau == 0 and r.wtau_signed == 0
    assert (r.pearson, r.spearman, r.kendall, r.r2) == (0, 0, 0, 0)
    assert np.isnan([r.slope, r.intercept, r.p_value, r.pearson_ci_lo, r.pearson_ci_hi]).all()
    assert r.boot_degenerate == r.n_boot == 100 and r.pearson_boot_lo == r.pearson_boot_hi == 0
    # LOTO with a constant score predicts the mean of the other tasks: [3, 8/3, 7/3, 2];
    # errors [-2, -2/3, 2/3, 2] -> MAE 4/3, PRESS 80/9 against SS 5 -> R^2 = 1 - 16/9 = -7/9
    assert (r.loto_mae, r.loto_r2) == (pytest.approx(4 / 3), pytest.approx(-7 / 9))


def test_constant_outcome_gives_zero_and_a_flag():
    r = row(evaluate(*tables({"est": [1.0, 3.0, 2.0]}, [0.2] * 3), UP, n_boot=20))
    assert r.constant and r.wtau == 0 and r.pearson == 0
    assert (r.slope, r.intercept) == (pytest.approx(0.0), pytest.approx(0.2))
    assert np.isnan(r.loto_r2)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10)
    s, o = tables({"est": x, "iimm": x + rng.normal(size=10)}, x + rng.normal(size=10))
    a, b, c = (evaluate(s, o, UP, n_boot=300, seed=seed) for seed in (7, 7, 8))
    pd.testing.assert_frame_equal(a, b)
    boot = [f"{k}_boot_{e}" for k in ("pearson", "spearman", "kendall") for e in ("lo", "hi")]
    varying = boot + ["ref_diff_lo"]
    assert not np.allclose(a[varying].to_numpy(float), c[varying].to_numpy(float), equal_nan=True)
    r = row(a)
    assert r.n_boot == 300 and r.pearson_boot_lo < r.pearson < r.pearson_boot_hi
    # rows are independent of each other: dropping an estimator leaves the other row unchanged
    alone = evaluate(s[s.estimator == "est"], o, UP, n_boot=300, seed=7)
    pd.testing.assert_series_equal(row(alone)[boot], r[boot], check_names=False)


def test_degenerate_resamples_are_counted():
    # with 3 distinct tasks a resample is constant iff it draws one task 3 times: P = 3/27 = 1/9
    r = row(evaluate(*tables({"est": [1.0, 2.0, 4.0]}, [3.0, 1.0, 2.0]), UP, n_boot=900))
    assert 60 <= r.boot_degenerate <= 140
    assert np.isnan(r.pearson_ci_lo)  # Fisher interval needs n > 3


def test_loto_hand_computed():
    # x = 0..3, y = [0, 2, 1, 3]; held-out predictions 1, 5/7, 16/7, 2 -> errors -1, 9/7, -9/7, 1:
    # MAE = 8/7, PRESS = 260/49 against SS = 5 -> R^2 = -3/49
    got = loto(np.arange(4.0), np.array([0.0, 2.0, 1.0, 3.0]))
    assert (got["loto_mae"], got["loto_r2"]) == (pytest.approx(8 / 7), pytest.approx(-3 / 49))


def test_loto_on_noise_is_not_predictive():
    rng = np.random.default_rng(11)
    r = row(evaluate(*tables({"est": rng.normal(size=15)}, rng.normal(size=15)), UP, n_boot=20))
    assert r.loto_r2 <= 0.05


@pytest.mark.parametrize("p, expected", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.01, 0.02, 0.03], [0.03, 0.04, 0.04]),
    ([0.5, np.nan, 0.2], [0.5, np.nan, 0.4]),  # NaN is not a test: m = 2
    ([0.6, 0.9], [1.0, 1.0]),
    ([], []),
])
def test_holm_known_values(p, expected):
    np.testing.assert_allclose(holm(p), expected)


def test_paired_comparison_with_iimm():
    rng = np.random.default_rng(2)
    y = np.linspace(0, 1, 12)
    s, o = tables({"iimm": y + rng.normal(0, 0.4, 12), "est": y + rng.normal(0, 0.01, 12),
                   "other": rng.normal(size=12), "down": -y}, y)
    iimm_scores = s.loc[s.estimator == "iimm", "score"]
    s = pd.concat([s, s[s.estimator == "iimm"].assign(estimator="twin")])
    out = evaluate(s, o, {**UP, "twin": True}, n_boot=400)
    best, down, twin, ref = (row(out, e) for e in ("est", "down", "twin", "iimm"))
    expected = 1 - stats.spearmanr(iimm_scores, y).statistic
    assert best.ref_diff == pytest.approx(expected) and best.ref_diff_lo > 0 and best.ref_p < 0.05
    assert down.ref_diff == pytest.approx(expected)  # signed: -(-1) for a lower-is-better estimator
    assert twin.ref_diff == twin.ref_diff_lo == twin.ref_diff_hi == 0 and twin.ref_p == 1
    assert ref.ref_n == 0 and np.isnan([ref.ref_diff, ref.ref_p, ref.ref_p_holm]).all()
    family = out[(out.group_kind == "encoder") & (out.outcome == "id_gain") & (out.estimator != "iimm")]
    assert (family.ref_n == 12).all() and (family.ref_p_holm >= family.ref_p).all()
    assert row(out, "other").ref_diff < 0


def test_direction_flip():
    x = np.array([0.3, 0.1, 0.4, 0.9, 0.2, 0.6])
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    out = evaluate(*tables({"est": x, "down": -x}, y), UP, n_boot=20)
    up, down = row(out), row(out, "down")
    assert up.higher_is_better and not down.higher_is_better
    for k in ("pearson", "spearman", "kendall"):
        assert down[k] == pytest.approx(-up[k]) and down[f"{k}_signed"] == pytest.approx(up[k])
    # weighted tau is not odd: the signed value is recomputed on the negated score
    assert down.wtau == pytest.approx(stats.weightedtau(-x, y).statistic)
    assert down.wtau_signed == pytest.approx(stats.weightedtau(x, y).statistic) == pytest.approx(up.wtau)
    assert stats.weightedtau(-x, y).statistic != pytest.approx(-stats.weightedtau(x, y).statistic)


def test_directions_from_the_registry():
    s, o = tables({"modality_gap": [1, 2, 3, 4], "iimm": [1, 2, 4, 3], "random": [4, 1, 2, 3]}, [1, 2, 3, 4])
    out = evaluate(s, o, n_boot=20)
    assert not row(out, "modality_gap").higher_is_better and row(out, "iimm").higher_is_better
    assert row(out, "modality_gap").pearson_signed == pytest.approx(-1.0)
    assert row(out, "random").baseline and row(out, "modality_gap").baseline and not row(out, "iimm").baseline
    with pytest.raises(InvalidInput, match="not_an_estimator"):
        evaluate(*tables({"not_an_estimator": [1, 2, 3]}, [1, 2, 3]), n_boot=20)


def test_partial_results_and_seed_averaging():
    y = np.array([0.1, 0.5, 0.3, 0.9])
    parts = [tables({"est": 2 * y, "iimm": y}, y, encoder=e, tasks=["a", "b", "c", "d"], seeds=(0, 1))
             for e in ("e1", "e2", "e3")]
    s = pd.concat([p[0] for p in parts], ignore_index=True)
    o = pd.concat([p[1] for p in parts], ignore_index=True)
    o.loc[o.seed == 0, "id_gain"] += 0.2  # seeds 0.2 apart: the mean is y + 0.1
    o.loc[o.seed == 1, "id_gain"] -= 0.0
    o = o[~((o.encoder == "e1") & (o.seed == 1) & (o.task == "a"))]  # one seed missing
    o = o[~((o.encoder == "e2") & o.task.isin(["a", "b"]))]  # e2 has only 2 tasks fine-tuned
    s = s[~((s.encoder == "e3") & (s.task == "d") & (s.estimator == "est"))]  # one score missing
    out = evaluate(s, o, UP, n_boot=50)
    e1, e2, e3 = (row(out, group=g) for g in ("e1", "e2", "e3"))
    assert (e1.n, e1.n_seeds_min, e1.n_seeds_max) == (4, 1, 2)
    assert row(out, group="e3", outcome="id_gain_norm").slope == pytest.approx(0.5)
    assert (e3.n, e3.slope, e3.ref_n) == (3, pytest.approx(0.5), 3)
    assert e2.n == 2 and not e2.constant and e2.n_boot == 0 and e2.ref_n == 0
    assert e2[["pearson", "wtau", "slope", "loto_r2", "pearson_boot_lo", "ref_diff"]].isna().all()
    # task groups need 3 encoders: only tasks c and d have them; on d, "est" lacks e3's score
    tasks = out[out.group_kind == "task"]
    assert sorted(tasks.group.unique()) == ["c", "d"]
    assert row(out, kind="task", group="d").n == 2 and row(out, "iimm", kind="task", group="d").n == 3
    assert tasks.n_boot.eq(0).all() and tasks.loto_r2.isna().all()


def test_summary_means_and_ranks():
    x = np.arange(4.0)
    y_lin, y_hand = 2 * x + 1, np.array([0.0, 2.0, 1.0, 3.0])
    parts = [tables({"est": x, "random": [3.0, 0.0, 2.0, 1.0]}, y, encoder=e)
             for e, y in (("e1", y_lin), ("e2", y_hand))]
    s = pd.concat([p[0] for p in parts])
    o = pd.concat([p[1] for p in parts])
    summary = summarise(evaluate(s, o, UP, n_boot=20))
    gain = summary[summary.outcome == "id_gain_norm"]
    assert list(gain.estimator) == ["est", "random"] and list(gain["rank"]) == [1, 2]
    est = gain.iloc[0]
    assert (est.n_groups, est.baseline, gain.iloc[1].baseline) == (2, False, True)
    assert est.mean_loto_r2 == pytest.approx((1 - 3 / 49) / 2)  # perfect fit and the hand example
    assert est.mean_kendall_signed == pytest.approx((1 + 4 / 6) / 2)
    with pytest.raises(InvalidInput, match="missing column"):
        summarise(s)


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


def test_empty_join_gives_empty_frame():
    s, o = tables({"est": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0])
    out = evaluate(s, o.assign(encoder="elsewhere"), UP)
    assert out.empty and list(out.columns) == COLUMNS


def test_leaderboard_interval_follows_the_direction_adjusted_r():
    from leaderboard.render import ranking

    rng = np.random.default_rng(0)
    y = rng.normal(size=8)
    noisy = y + 0.3 * rng.normal(size=8)
    out = evaluate(*tables({"est": noisy, "down": -noisy, "iimm": y}, y), UP, n_boot=200)
    table = ranking(out, "id_gain", pd.Series(dtype=float)).set_index("estimator")
    for name in ("est", "down"):  # "down" is lower-is-better: its signed r and interval equal est's
        r = table.loc[name]
        assert r.pearson_boot_lo <= r.pearson_signed <= r.pearson_boot_hi
        assert (r.pearson_signed, r.pearson_boot_lo, r.pearson_boot_hi) == pytest.approx(
            tuple(table.loc["est", ["pearson_signed", "pearson_boot_lo", "pearson_boot_hi"]]))
