"""The ``models`` protocol (benchmark.evaluation.models_protocol, benchmark.evaluation.rank_stats) against scipy, hand
enumerations and formulas worked by hand on small tables."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.evaluation.models_protocol import STATIC, grid_accuracies, select_models, task_statistics
from benchmark.evaluation.rank_stats import null_band, permutation_p, top1, weighted_tau
from estimators.errors import InvalidInput


# -- per-task statistics ------------------------------------------------------------------------
def test_weighted_tau_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(3, 12))
        x = rng.integers(0, 4, n).astype(float)  # many ties
        y = rng.integers(0, 5, n).astype(float)
        expected = stats.weightedtau(x, y).statistic
        got = weighted_tau(x, y)
        assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-12)
    batch = rng.normal(size=(50, 7))
    y = rng.normal(size=7)
    np.testing.assert_allclose(weighted_tau(batch, y), [stats.weightedtau(b, y).statistic for b in batch], atol=1e-12)


def test_weighted_tau_anchors():
    assert weighted_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert weighted_tau([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)


def test_exact_p_for_four_models_is_a_hand_enumeration():
    x = np.array([0.3, 0.1, 0.9, 0.5])
    y = np.array([71.0, 64.5, 80.2, 69.9])
    observed = stats.weightedtau(x, y).statistic
    taus = [stats.weightedtau(np.array(p), y).statistic for p in itertools.permutations(x)]
    expected = sum(t >= observed - 1e-12 for t in taus) / 24
    p, exact, se = permutation_p(x, y)
    assert exact and se == 0.0
    assert p == pytest.approx(expected)
    # the right order is the best of the 24 orderings: only it (and none other) reaches tau = 1
    p_best, _, _ = permutation_p(y, y)
    assert p_best == pytest.approx(1 / 24)


def test_p_with_tied_accuracies_counts_every_ordering_that_ties():
    y = np.array([1.0, 1.0, 2.0, 3.0])
    x = np.array([0.0, 1.0, 2.0, 3.0])
    # swapping the two tied models gives the same tau: at least 2 of 24 orderings reach it
    p, exact, _ = permutation_p(x, y)
    assert exact and p == pytest.approx(2 / 24)


def test_monte_carlo_p_above_eight_models_reports_its_error():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=11), rng.normal(size=11)
    p, exact, se = permutation_p(x, y, draws=2000)
    assert not exact and 0 < p <= 1 and se == pytest.approx(math.sqrt(p * (1 - p) / 2000))
    # against a brute-force Monte Carlo with scipy: within 4 standard errors
    taus = [stats.weightedtau(rng.permutation(x), y).statistic for _ in range(2000)]
    brute = (1 + sum(t >= stats.weightedtau(x, y).statistic for t in taus)) / 2001
    assert abs(p - brute) < 4 * math.sqrt(2) * se + 1e-9
    assert permutation_p(x, y, draws=2000) == (p, exact, se)  # seeded


def test_null_band_for_three_and_four_models_by_hand():
    # 3 models: of the 6 orderings of distinct scores, only the right one and the one that swaps
    # the two worst models reach weighted tau >= 0.5 (tau = 1 and 0.51...)
    taus = sorted(stats.weightedtau(np.array(p), np.arange(3.0)).statistic for p in itertools.permutations(range(3)))
    assert null_band(np.arange(3.0)) == pytest.approx(sum(t >= 0.5 for t in taus) / 6) == pytest.approx(1 / 3)
    taus = [stats.weightedtau(np.array(p), np.arange(4.0)).statistic for p in itertools.permutations(range(4))]
    assert null_band(np.arange(4.0)) == pytest.approx(sum(t >= 0.5 for t in taus) / 24) == pytest.approx(0.25)


def test_top1_by_hand_with_ties():
    assert top1([3, 1, 2], [80, 90, 70]) == pytest.approx((80 / 90, 10))
    # two models tie on top: the expected accuracy of picking one of them at random
    assert top1([3, 3, 1], [80, 60, 90]) == pytest.approx((70 / 90, 20))
    assert top1([1, 2, 3], [50, 60, 90]) == (1.0, 0.0)


def test_task_statistics_match_scipy():
    x = np.array([0.2, 0.5, 0.1, 0.9, 0.4])
    y = np.array([60.0, 75.0, 60.0, 82.0, 70.0])
    row = task_statistics(np.array(list("abcde")), x, y)
    assert row["weighted_tau"] == pytest.approx(stats.weightedtau(x, y).statistic)
    assert row["kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic)  # tau-b
    assert row["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert (row["top_model"], row["best_model"], row["rel_at_1"], row["regret_at_1"]) == ("d", "d", 1.0, 0.0)
    constant = task_statistics(np.array(list("abc")), np.ones(3), np.array([1.0, 2.0, 3.0]))
    assert constant["constant"] and constant["weighted_tau"] == 0.0 and math.isnan(constant["p_value"])


# -- the protocol on tables ---------------------------------------------------------------------
def zoo(accuracy: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([(t, m, a) for t, by in accuracy.items() for m, a in by.items()],
                        columns=["task", "model", "accuracy"])


ACC = {"t1": {"a": 90, "b": 80, "c": 70, "d": 60},
       "t2": {"a": 85, "b": 88, "c": 70, "d": 65},
       "t3": {"a": 70, "b": 60, "c": 75, "d": 50}}


def test_static_ranker_is_the_mean_over_the_other_datasets():
    result = select_models(zoo(ACC), n_boot=50)
    static = result.per_task[result.per_task["estimator"] == STATIC].set_index("task")
    # t1: the mean of t2 and t3 per model: a 77.5, b 74, c 72.5, d 57.5 -> order a b c d = truth
    assert static.loc["t1", "weighted_tau"] == pytest.approx(1.0)
    means = {m: (ACC["t1"][m] + ACC["t3"][m]) / 2 for m in "abcd"}
    x, y = np.array([means[m] for m in "abcd"]), np.array([ACC["t2"][m] for m in "abcd"], dtype=float)
    assert static.loc["t2", "weighted_tau"] == pytest.approx(stats.weightedtau(x, y).statistic)
    assert static.loc["t2", "top_model"] == "a" and static.loc["t2", "regret_at_1"] == pytest.approx(3)


def test_class_subsets_of_the_target_dataset_are_left_out_of_the_static_ranker():
    acc = {**ACC, "t1_sub": {"a": 0, "b": 0, "c": 100, "d": 100}}
    clusters = {"t1": "t1", "t1_sub": "t1", "t2": "t2", "t3": "t3"}
    with_sub = select_models(zoo(acc), clusters=clusters, n_boot=50).per_task
    without = select_models(zoo(ACC), n_boot=50).per_task
    def row(f):
        return f[(f.estimator == STATIC) & (f.task == "t1")].iloc[0]["weighted_tau"]

    assert row(with_sub) == row(without) == pytest.approx(1.0)


def test_direction_and_summary_against_a_brute_force_mean():
    scores = pd.DataFrame([(t, m, "down", -a + (5 if m == "d" else 0)) for t, by in ACC.items() for m, a in by.items()],
                          columns=["task", "model", "estimator", "score"])
    result = select_models(zoo(ACC), scores, {"down": False}, n_boot=200)
    per = result.per_task[result.per_task["estimator"] == "down"]
    for task, by in ACC.items():
        x = np.array([a - (5 if m == "d" else 0) for m, a in by.items()])  # oriented: -score
        expected = stats.weightedtau(x, np.array(list(by.values()), dtype=float)).statistic
        assert per.set_index("task").loc[task, "weighted_tau"] == pytest.approx(expected)
    summary = result.summary.set_index("estimator")
    assert summary.loc["down", "weighted_tau"] == pytest.approx(per["weighted_tau"].mean())
    down = summary.loc["down"]
    assert down["weighted_tau_lo"] <= down["weighted_tau"] <= down["weighted_tau_hi"]
    assert summary.loc["down", "vs_static"] == pytest.approx(
        per["weighted_tau"].mean() - summary.loc[STATIC, "weighted_tau"])
    assert set(summary.index) == {"down", STATIC, "random"}


def test_lomo_ranks_by_brute_force():
    rng = np.random.default_rng(3)
    acc = {f"t{i}": {m: float(rng.integers(50, 90)) for m in "abcde"} for i in range(4)}
    scores = pd.DataFrame([(t, m, e, rng.normal()) for t in acc for m in "abcde" for e in ("e1", "e2")],
                          columns=["task", "model", "estimator", "score"])
    result = select_models(zoo(acc), scores, {"e1": True, "e2": True}, n_boot=20)
    names = sorted(result.summary["estimator"])
    ranks = {n: [] for n in names}
    for out in "abcde":
        sub = select_models(zoo({t: {m: a for m, a in by.items() if m != out} for t, by in acc.items()}),
                            scores[scores.model != out], {"e1": True, "e2": True}, n_boot=0).per_task
        means = sub.groupby("estimator")["weighted_tau"].mean()
        for n in names:
            ranks[n].append(1 + int((means > means[n]).sum()))
    summary = result.summary.set_index("estimator")
    for n in names:
        assert (summary.loc[n, "lomo_rank_min"], summary.loc[n, "lomo_rank_max"]) == (min(ranks[n]), max(ranks[n]))


def test_tasks_with_too_few_models_are_skipped_with_the_reason():
    acc = {**ACC, "tiny": {"a": 50, "b": 60}}
    result = select_models(zoo(acc), n_boot=20)
    assert "tiny" not in set(result.per_task["task"])
    reason = result.skipped.set_index("task").loc["tiny", "reason"]
    assert "2 model(s)" in reason and "needs 3" in reason


def test_methods_are_separate_tables_and_attributes_are_baselines():
    acc = pd.concat([zoo(ACC).assign(method="full"), zoo(ACC).assign(method="linear",
                                                                          accuracy=lambda d: 100 - d["accuracy"])])
    attributes = pd.DataFrame({"model": list("abcd"), "params": [4.0, 3.0, 2.0, 1.0]})
    result = select_models(acc, attributes=attributes, n_boot=20)
    per = result.per_task.set_index(["method", "estimator", "task"])
    assert per.loc[("full", "params", "t1"), "weighted_tau"] == pytest.approx(1.0)
    assert per.loc[("linear", "params", "t1"), "weighted_tau"] == pytest.approx(-1.0)
    assert per.loc[("full", "params", "t1"), "baseline"]


def test_pooled_view_is_one_correlation_over_all_cells():
    scores = pd.DataFrame([(t, m, "s", a + (3 if m == "b" else 0)) for t, by in ACC.items() for m, a in by.items()],
                          columns=["task", "model", "estimator", "score"])
    pooled = select_models(zoo(ACC), scores, {"s": True}, n_boot=50, with_pooled=True).pooled.set_index("estimator")
    x = [a + (3 if m == "b" else 0) for by in ACC.values() for m, a in by.items()]
    y = [a for by in ACC.values() for a in by.values()]
    assert pooled.loc["s", "spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert pooled.loc["s", "pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert pooled.loc["s", "cells"] == 12


def test_grid_accuracies_are_exact_seed_means():
    outcomes = pd.DataFrame({"encoder": ["e", "e"], "method": ["full", "full"], "task": ["t", "t"],
                             "seed": [0, 1], "n_test": [3, 3], "correct_ft": [1, 2]})
    acc = grid_accuracies(outcomes)
    assert acc.iloc[0]["accuracy"] == 0.5 and list(acc.columns) == ["task", "model", "method", "accuracy"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns="accuracy"), "missing column"),
    (lambda d: d.assign(accuracy=d["accuracy"].astype(object).where(d.index != 2, "n/a")), "'n/a' is not a finite"),
    (lambda d: pd.concat([d, d.iloc[[0]]]), "duplicate row"),
])
def test_bad_accuracies_are_one_clear_line(mutate, message):
    with pytest.raises(InvalidInput, match=message):
        select_models(mutate(zoo(ACC)), n_boot=10)


def test_fractions_are_accepted_as_accuracies():
    acc = zoo(ACC).assign(accuracy=lambda d: [Fraction(int(a), 100) for a in d["accuracy"]])
    assert len(select_models(acc, n_boot=10).per_task) > 0
