"""The leaderboard from synthetic result cells: exact deltas, a board that rebuilds byte for byte
from its own tables, the recovery of an older outcomes.csv, every estimator accounted for, and the
seed noise beside the task spread."""
from __future__ import annotations

import math
import re
import statistics
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.cli.board import build_board
from benchmark.evaluation.tables import read_tables
from benchmark.store.results import cell_path, write_cell
from estimators import InvalidInput, list_estimators
from tasks import get_task

ROOT = Path(__file__).resolve().parents[1]

TASKS = ["cifar10", "cifar10_animals", "digits", "mnist", "notmnist", "pneumoniamnist"]
N_TEST = {t: 468 if t == "pneumoniamnist" else 500 for t in TASKS}  # pneumoniamnist: 234 per class
N_OOD = 50


def write_results(folder, encoders=("e1", "e2", "e3"), methods=("full", "lora"), seeds=(0,), drop=()):
    """Score and outcome cells of a small grid; logme fails on 2 cells, leep is skipped on one. The
    outcome cells (encoder, method, task, seed) in ``drop`` are left out. Returns the correct counts
    written: ``{(encoder, method, task, seed): (zero-shot counts, fine-tuned counts)}`` per task."""
    rng = np.random.default_rng(0)
    written = {}
    for e in encoders:
        for t in TASKS:
            scores = {name: {"score": float(rng.normal()), "seconds": 0.001} for name in ("iimm", "leep", "random")}
            failed = {"logme": "ValueError: score is NaN"} if (e, t) in {("e1", "mnist"), ("e2", "digits")} else {}
            if not failed:
                scores["logme"] = {"score": float(rng.normal()), "seconds": 0.002}
            skipped = {"leep": "needs logit_scale"} if (e, t) == ("e3", "notmnist") else {}
            for name in skipped:
                del scores[name]
            n_classes = get_task(t).n_classes
            record = {"suite": "toy", "encoder": e, "task": t, "n_classes": n_classes, "n_train": 100,
                      "n_test": N_TEST[t], "chance": 1 / n_classes, "zero_shot_acc_test": float(rng.uniform()),
                      "scores": scores, "skipped": skipped, "failed": failed, "versions": {"toy": "1.0"}}
            write_cell(cell_path(folder, "scores", f"{e}__{t}", {"e": e, "t": t}), {"e": e, "t": t}, record)
            zs = {u: int(rng.integers(0, N_TEST[u] if u == t else N_OOD)) for u in TASKS}
            for m in methods:
                for s in seeds:
                    ft = {u: min(zs[u] + int(rng.integers(0, 200 if u == t else 5)), N_TEST[u] if u == t else N_OOD)
                          for u in TASKS}
                    if (e, m) == ("e1", "full"):  # 267 - 220 and 91 - 44: the same gain, 47/500
                        zs_t, ft_t = {"cifar10": (220, 267), "notmnist": (44, 91)}.get(t, (zs[t], ft[t]))
                        zs, ft = {**zs, t: zs_t}, {**ft, t: ft_t}
                    if (e, m, t, s) in drop:
                        continue
                    size = {u: N_TEST[u] if u == t else N_OOD for u in TASKS}
                    cell = {"encoder": e, "method": m, "target": t, "seed": s,
                            "eval_tasks": [u for u in TASKS if u != t], "n_test": size, "versions": {"toy": "1.0"},
                            "acc_zs": {u: zs[u] / size[u] for u in TASKS},
                            "acc_ft": {u: ft[u] / size[u] for u in TASKS}}
                    spec = {"e": e, "m": m, "t": t, "s": s}
                    write_cell(cell_path(folder, "outcomes", f"{e}__{m}__{t}__{s}", spec), spec, cell)
                    written[e, m, t, s] = dict(zs), dict(ft)
    return written


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    results, first, second = (tmp_path_factory.mktemp(n) for n in ("results", "board", "rebuilt"))
    written = write_results(results)
    build_board(results, first, n_boot=200)
    build_board(first, second, n_boot=200, from_tables=True)
    return results, first, second, written


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_board_rebuilds_byte_for_byte_from_its_own_tables(boards, tmp_path):
    results, first, second, _ = boards
    assert files(first) == files(second)
    assert {str(p) for p in files(first)} >= {"leaderboard.md", "stats.csv", "summary.csv", "stability.csv",
                                              "noise.csv", "scores.csv", "outcomes.csv", "not_scored.csv",
                                              "provenance.json"}
    build_board(results, tmp_path, n_boot=200)  # the same cells again: the same bytes
    assert files(tmp_path) == files(first)


def test_outcomes_carry_exact_counts(boards):
    _, first, _, _ = boards
    outcomes = pd.read_csv(first / "outcomes.csv")
    tied = outcomes[(outcomes.encoder == "e1") & (outcomes.method == "full")
                    & outcomes.task.isin(["cifar10", "notmnist"])]
    assert list(tied.id_gain) == [0.094, 0.094]
    assert (0.534 - 0.440) != (0.182 - 0.088)  # what subtracting the stored accuracies would give
    for r in outcomes.itertuples():
        assert r.n_test == N_TEST[r.task]
        assert Fraction(r.correct_zs, r.n_test) == Fraction(r.acc_zs).limit_denominator(1000)
        assert r.id_gain == float(Fraction(r.correct_ft - r.correct_zs, r.n_test))
        assert r.id_gain_norm == float(Fraction(r.correct_ft - r.correct_zs, r.n_test - r.correct_zs))
        assert r.ood_change == float(Fraction(r.ood_num, r.ood_den))
        assert r.ood_den == (4 if r.task.startswith("cifar10") else 5) * N_OOD  # other datasets' tasks x 50


def test_older_outcomes_without_counts_are_recovered(boards, tmp_path):
    _, first, _, _ = boards
    (tmp_path / "scores.csv").write_bytes((first / "scores.csv").read_bytes())
    full = pd.read_csv(first / "outcomes.csv")
    old = full[["encoder", "method", "task", "seed", "id_gain", "id_gain_norm", "ood_change"]]
    (tmp_path / "outcomes.csv").write_text(old.to_csv(index=False, float_format="%.10g"))
    got = read_tables(tmp_path)["outcomes"]
    assert list(got.n_test) == list(full.n_test) and list(got.correct_ft) == list(full.correct_ft)
    assert list(got.correct_zs) == list(full.correct_zs)
    assert [Fraction(a, b) for a, b in zip(got.ood_num, got.ood_den)] == \
        [Fraction(a, b) for a, b in zip(full.ood_num, full.ood_den)]
    assert list(got.id_gain) == [Fraction(b - a, n) for a, b, n in zip(full.correct_zs, full.correct_ft, full.n_test)]


def test_tampered_or_missing_tables_are_one_line_errors(boards, tmp_path, capsys):
    _, first, _, _ = boards
    (tmp_path / "scores.csv").write_bytes((first / "scores.csv").read_bytes())
    outcomes = pd.read_csv(first / "outcomes.csv")
    outcomes.loc[3, "id_gain"] += 0.01
    (tmp_path / "outcomes.csv").write_text(outcomes.to_csv(index=False))
    with pytest.raises(InvalidInput, match="id_gain disagrees with the counts in 1 row"):
        read_tables(tmp_path)
    assert main(["leaderboard", "--tables", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "scores.csv is missing" in err and "\n" not in err


def test_every_registered_estimator_is_accounted_for(boards, tmp_path):
    _, first, _, _ = boards
    page = (first / "leaderboard.md").read_text()
    coverage = page.split("## Coverage: every registered estimator")[1].split("## ")[0]
    rows = {line.split("|")[1].strip(): line for line in coverage.splitlines() if line.startswith("| ")}
    assert set(list_estimators()) <= set(rows) - {"estimator"}
    assert "16 of 18" in rows["logme"] and "failed on 2 of 18 cells: ValueError: score is NaN" in rows["logme"]
    assert "17 of 18" in rows["leep"] and "skipped on 1 of 18 cells: needs logit_scale" in rows["leep"]
    assert "not run on 18 of 18 cells" in rows["ncti"]
    not_scored = pd.read_csv(first / "not_scored.csv")
    assert sorted(not_scored.status) == ["failed", "failed", "skipped"]
    # one encoder: the pool-relative NCTI cannot be scored, and the board says why
    results = tmp_path / "one"
    write_results(results, encoders=("e1",), methods=("full",))
    build_board(results, tmp_path / "board", n_boot=50)
    page = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "pool-relative: needs >= 2 encoders (this board has 1)" in page
    unranked = re.search(r"Not ranked \(scored in no group of 3\+ tasks; Coverage says why\): (.*)\.", page)
    assert "ncti" in unranked.group(1).split(", ") and "iimm" not in unranked.group(1).split(", ")


def test_header_defines_every_column(boards):
    _, first, _, _ = boards
    page = (first / "leaderboard.md").read_text()
    definitions = page.split("How to read a table")[1].split("\n## ")[0]
    terms = set(re.findall(r"\*\*([^*]+)\*\*", definitions))
    section = page.split("## In-domain gain over zero-shot error (id_gain_norm)")[1]
    header = [c.strip() for c in section.strip().splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["#", "estimator"] and len(header) == 12
    for column in header[2:]:
        label = column.split(" [")[0].split(" (")[0].replace(" >0", "")
        assert any(label.startswith(t) or t.startswith(label) for t in terms), column
    assert "6 tasks from 5 datasets (cifar10, cifar10_animals share cifar10's images)" in page
    assert "3 encoders, 2 fine-tuning methods, 1 seed: 6 (method, encoder) groups" in page


def hand_deltas(written) -> dict:
    """Every written cell's three deltas, as fractions of the counts it was written with."""
    out = {}
    for (e, m, t, s), (zs, ft) in written.items():
        other = [u for u in TASKS if u != t and not (u.startswith("cifar10") and t.startswith("cifar10"))]
        ood = [Fraction(ft[u] - zs[u], N_OOD) for u in other]
        gain = ft[t] - zs[t]
        out[e, m, t, s] = {"id_gain": Fraction(gain, N_TEST[t]), "id_gain_norm": Fraction(gain, N_TEST[t] - zs[t]),
                           "ood_change": sum(ood) / len(ood)}
    return out


def hand_noise(deltas: dict, method: str, outcome: str) -> tuple:
    """(seed sd, task sd) as the brief defines them, with ``statistics`` on exact fractions; seed sd
    None without a cell of 2+ seeds."""
    cells, means = {}, {}
    for (e, m, t, s), d in deltas.items():
        if m == method:
            cells.setdefault((e, t), []).append(d[outcome])
    for (e, t), values in cells.items():
        means.setdefault(e, []).append(statistics.mean(values))
    seed = [statistics.variance(v) for v in cells.values() if len(v) >= 2]
    return (math.sqrt(statistics.mean(seed)) if seed else None,
            math.sqrt(statistics.mean(statistics.variance(v) for v in means.values())))


def noise_rows(page: str) -> dict:
    section = page.split("**Seed noise beside task spread**")[1].split("\n## ")[0]
    assert "nan" not in section.lower()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == ["method", "outcome", "seed sd", "task sd", "task sd / seed sd", "rests on"]
    return {(r[0], r[1]): r[2:] for r in rows[1:]}


def test_seed_noise_beside_task_spread_matches_a_hand_computation(tmp_path):
    drop = {("e2", "lora", "digits", 2), ("e3", "lora", "mnist", 1), ("e3", "lora", "mnist", 2)}
    written = write_results(tmp_path / "results", seeds=(0, 1, 2), drop=drop)
    build_board(tmp_path / "results", tmp_path / "board", n_boot=20)
    build_board(tmp_path / "board", tmp_path / "rebuilt", n_boot=20, from_tables=True)
    assert files(tmp_path / "rebuilt") == files(tmp_path / "board")
    noise = pd.read_csv(tmp_path / "board" / "noise.csv")
    outcomes = ("id_gain", "id_gain_norm", "ood_change")
    assert list(zip(noise.method, noise.outcome)) == [(m, o) for m in ("full", "lora") for o in outcomes]
    deltas = hand_deltas(written)
    rows = noise_rows((tmp_path / "board" / "leaderboard.md").read_text())
    for r in noise.itertuples():
        seed_sd, task_sd = hand_noise(deltas, r.method, r.outcome)
        assert seed_sd > 0 and task_sd > 0
        assert (r.seed_sd, r.task_sd, r.ratio) == pytest.approx((seed_sd, task_sd, task_sd / seed_sd), rel=1e-9)
        assert rows[r.method, r.outcome][:3] == [f"{seed_sd:.3f}", f"{task_sd:.3f}", f"{task_sd / seed_sd:.1f}"]
    counts = ["seed_cells", "seeds_min", "seeds_max", "task_encoders", "tasks_min", "tasks_max"]
    # lora: (e3, mnist) has one seed (out of the seed sd, in the task sd), (e2, digits) two
    assert noise.groupby("method")[counts].nunique().eq(1).all().all()
    assert noise.groupby("method")[counts].first().to_dict("index") == {
        "full": dict(zip(counts, [18, 3, 3, 3, 6, 6])), "lora": dict(zip(counts, [17, 2, 3, 3, 6, 6]))}
    assert rows["full", "id_gain"][3] == "18 cells × 3 seeds; 3 encoders × 6 tasks"
    assert rows["lora", "ood_change"][3] == "17 cells × 2–3 seeds; 3 encoders × 6 tasks"


def test_one_seed_leaves_the_seed_noise_unmeasured(boards):
    _, first, _, written = boards
    noise = pd.read_csv(first / "noise.csv")
    assert noise.seed_sd.isna().all() and noise.ratio.isna().all() and (noise.seed_cells == 0).all()
    assert all(line.split(",")[2] == "" for line in (first / "noise.csv").read_text().splitlines()[1:])
    deltas = hand_deltas(written)
    rows = noise_rows((first / "leaderboard.md").read_text())
    assert len(rows) == len(noise) == 6
    for r in noise.itertuples():
        seed_sd, task_sd = hand_noise(deltas, r.method, r.outcome)
        assert seed_sd is None and r.task_sd == pytest.approx(task_sd, rel=1e-9)
        assert rows[r.method, r.outcome] == ["not measured", f"{task_sd:.3f}", "-",
                                             "1 seed per cell; 3 encoders × 6 tasks"]


def test_exact_deltas_of_a_cell():
    from benchmark.evaluation.deltas import cell_deltas, exact_deltas

    cell = {"encoder": "e", "method": "full", "target": "cifar10", "seed": 0,
            "acc_zs": {"cifar10": 0.44, "cifar10_animals": 0.3, "mnist": 0.5, "digits": 0.08},
            "acc_ft": {"cifar10": 0.534, "cifar10_animals": 0.9, "mnist": 0.46, "digits": 0.18},
            "n_test": {"cifar10": 500, "cifar10_animals": 50, "mnist": 50, "digits": 50}}
    d = exact_deltas(cell)
    assert (d["n_test"], d["correct_zs"], d["correct_ft"]) == (500, 220, 267)
    assert d["id_gain"] == Fraction(47, 500) and d["id_gain_norm"] == Fraction(47, 280)
    assert d["ood_excluded"] == ["cifar10_animals"]  # same images as the target
    assert d["ood_change"] == (Fraction(-2, 50) + Fraction(5, 50)) / 2 and d["ood_den"] == 100
    assert cell_deltas(cell)["id_gain"] == 0.094 == float(Fraction(91 - 44, 500))
    with pytest.raises(InvalidInput, match=r"outcome cell e/full/cifar10/0: an accuracy 0\.088 is not a count over 50"):
        exact_deltas({**cell, "acc_zs": {**cell["acc_zs"], "digits": 0.088}})


@pytest.mark.e2e
def test_a_board_with_a_plugin_estimator_rebuilds_from_its_tables_without_the_plugin(tmp_path):
    """estimators.csv carries each scored estimator's direction and baseline flag: a board scored by a
    plugin rebuilds from its own tables where the plugin is not installed, and the plugin's declared
    direction is used (here a lower-is-better copy of IIMM ranks exactly as IIMM)."""
    import shutil

    mini = ROOT / "leaderboard" / "mini"
    board = tmp_path / "board"
    board.mkdir()
    for name in ("scores.csv", "outcomes.csv", "not_scored.csv", "provenance.json", "estimators.csv"):
        shutil.copy(mini / name, board / name)
    scores = pd.read_csv(board / "scores.csv")
    plugin = scores[scores.estimator == "iimm"].assign(estimator="my_plugin", score=lambda d: -d["score"])
    pd.concat([scores, plugin]).to_csv(board / "scores.csv", index=False)
    with open(board / "estimators.csv", "a") as f:
        f.write("my_plugin,False,False,7\n")
    assert "my_plugin" not in list_estimators()
    build_board(board, tmp_path / "a", n_boot=50, from_tables=True, protocol="tasks")
    build_board(tmp_path / "a", tmp_path / "b", n_boot=50, from_tables=True, protocol="tasks")
    files = ("leaderboard.md", "stats.csv", "summary.csv", "estimators.csv")
    assert [(tmp_path / "a" / f).read_bytes() for f in files] == [(tmp_path / "b" / f).read_bytes() for f in files]
    groups = pd.read_csv(tmp_path / "a" / "stats.csv")
    mine, iimm = (groups[groups.estimator == e].set_index(["outcome", "method", "group"])
                  for e in ("my_plugin", "iimm"))
    assert mine["spearman_signed"].to_dict() == pytest.approx(iimm["spearman_signed"].to_dict())
    (board / "estimators.csv").write_text((mini / "estimators.csv").read_text())  # the plugin's row gone
    with pytest.raises(InvalidInput, match="'my_plugin' is not registered and the board has no estimators.csv row"):
        build_board(board, tmp_path / "c", n_boot=50, from_tables=True)


def test_a_rebuild_that_changes_nothing_touches_no_file(tmp_path):
    """Issue 21: a board file is written only when its bytes change (modification times stay)."""
    results = tmp_path / "results"
    write_results(results)
    build_board(results, tmp_path / "board", n_boot=20)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "board").rglob("*") if p.is_file()}
    build_board(results, tmp_path / "board", n_boot=20)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "board").rglob("*") if p.is_file()} == stamps
