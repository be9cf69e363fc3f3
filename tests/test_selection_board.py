"""The ``models`` protocol from the command line: published ground truth (the SFDA / LogME zoos in
``../shared/data/zoo``), the committed boards built from them, and bad files (one line, exit 2)."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from encoders.attributes import ENCODER_COLUMNS, TORCHVISION_COLUMNS, encoder_attributes, to_csv, torchvision_attributes

ROOT = Path(__file__).resolve().parents[1]
ZOO = Path(os.environ.get("TRANSFERBENCH_DATA", ROOT.parent / "shared" / "data")) / "zoo"
GROUP1 = ["resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet169", "densenet201",
          "mnasnet1_0", "mobilenet_v2", "googlenet", "inception_v3"]
needs_zoo = pytest.mark.skipif(not (ZOO / "sfda_group1.csv").is_file(),
                               reason=f"the published zoo tables are not at {ZOO} (set TRANSFERBENCH_DATA)")


def board_files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "models.csv"}


def test_group1_model_attributes_come_from_torchvision_metadata():
    committed = (ROOT / "leaderboard" / "sfda_group1" / "models.csv").read_text()
    assert to_csv(torchvision_attributes(GROUP1), TORCHVISION_COLUMNS) == committed
    rows = {r["model"]: r for r in torchvision_attributes(["resnet50"])}
    assert rows["resnet50"]["params"] == 25557032 and rows["resnet50"]["imagenet_top1"] == 76.13  # torchvision docs


def test_the_mini_board_counts_its_encoders_parameters():
    committed = (ROOT / "leaderboard" / "mini" / "models.csv").read_text()
    assert to_csv(encoder_attributes(["conse-lite0", "conse-lite1", "conse-lite2"]), ENCODER_COLUMNS) == committed
    # EfficientNet-Lite0 has 4.65M parameters (Tan & Le 2019, timm), MiniLM-L6 22.7M: the ConSE pair is their sum
    params = pd.read_csv(ROOT / "leaderboard" / "mini" / "models.csv").set_index("model")["params"]
    assert params["conse-lite0"] == pytest.approx(4.65e6 + 22.7e6, rel=0.01)


@needs_zoo
@pytest.mark.parametrize("group, models", [("sfda_group1", True), ("sfda_group2", False)])
def test_the_published_zoo_boards_rebuild_byte_for_byte(tmp_path, capsys, group, models):
    board = ROOT / "leaderboard" / group
    argv = ["leaderboard", "--accuracies", str(ZOO / f"{group}.csv"), "--out", str(tmp_path)]
    assert main(argv + (["--models", str(board / "models.csv")] if models else [])) == 0
    assert board_files(tmp_path) == board_files(board)


@needs_zoo
def test_group1_static_ranker_matches_the_published_critique(tmp_path, capsys):
    """"Back to the Basics" (TMLR) reports a mean weighted tau of about 0.83 for the static ranker on
    group 1, and about 0.65 for ImageNet accuracy."""
    assert main(["leaderboard", "--accuracies", str(ZOO / "sfda_group1.csv"), "--models",
                 str(ROOT / "leaderboard" / "sfda_group1" / "models.csv"), "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "selection_summary.csv").set_index("estimator")
    assert summary.loc["other_tasks_acc", "weighted_tau"] == pytest.approx(0.83, abs=0.01)
    assert summary.loc["imagenet_top1", "weighted_tau"] == pytest.approx(0.65, abs=0.01)
    assert "other_tasks_acc          mean weighted tau +0.8368" in capsys.readouterr().out
    per_task = pd.read_csv(tmp_path / "selection.csv")
    assert set(per_task.columns) >= {"estimator", "task", "n_models", "weighted_tau", "kendall_tau", "pearson",
                                     "rel_at_1", "regret_at_1", "p_value"}
    assert "method" not in per_task.columns and (per_task["n_models"] == 11).all()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


ACC = "task,model,accuracy\n" + "".join(f"{t},{m},{a}\n" for t, row in
                                        {"t1": (90, 80, 70), "t2": (60, 75, 50), "t3": (30, 20, 40)}.items()
                                        for m, a in zip("abc", row))


def test_scores_with_and_without_a_direction_column(tmp_path, capsys):
    acc = write(tmp_path / "acc.csv", ACC)
    lines = ["task,model,estimator,score,higher_is_better"]
    for t, row in {"t1": (90, 80, 70), "t2": (60, 75, 50), "t3": (30, 20, 40)}.items():
        lines += [f"{t},{m},mine,{-a},false" for m, a in zip("abc", row)]
        lines += [f"{t},{m},logme,{-a},true" for m, a in zip("abc", row)]  # a registered name, flipped by the file
    scores = write(tmp_path / "scores.csv", "\n".join(lines) + "\n")
    assert main(["leaderboard", "--accuracies", str(acc), "--scores", str(scores), "--out", str(tmp_path / "b"),
                 "--n-boot", "50"]) == 0
    per = pd.read_csv(tmp_path / "b" / "selection.csv").set_index(["estimator", "task"])
    assert (per.loc["mine", "weighted_tau"] == 1.0).all() and (per.loc["logme", "weighted_tau"] == -1.0).all()
    unknown = write(tmp_path / "s2.csv", "task,model,estimator,score\n" + "".join(
        f"{t},{m},newscore,{a}\n" for t, row in {"t1": (90, 80, 70), "t2": (60, 75, 50), "t3": (30, 20, 40)}.items()
        for m, a in zip("abc", row)))
    assert main(["leaderboard", "--accuracies", str(acc), "--scores", str(unknown), "--out", str(tmp_path / "c"),
                 "--n-boot", "50"]) == 0
    per = pd.read_csv(tmp_path / "c" / "selection.csv").set_index(["estimator", "task"])
    assert (per.loc["newscore", "weighted_tau"] == 1.0).all()  # an unknown name counts as higher-is-better
    page = (tmp_path / "c" / "leaderboard.md").read_text()
    assert "3 models: 0.33" in page and "smallest exact permutation p is 1/3! = 0.17" in page


@pytest.mark.parametrize("accuracies, message", [
    ("task,model\nt1,a\n", "missing column(s) ['accuracy']"),
    ("task,model,accuracy\nt1,a,high\nt1,b,3\nt1,c,4\n", "accuracy 'high' is not a finite number"),
    ("task,model,accuracy\nt1,a,1\nt1,a,2\nt1,c,4\n", "duplicate row"),
    ("", "cannot read the accuracies file"),
])
def test_bad_files_are_one_line_and_exit_2(tmp_path, capsys, accuracies, message):
    acc = write(tmp_path / "acc.csv", accuracies)
    assert main(["leaderboard", "--accuracies", str(acc), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_task_with_too_few_models_is_skipped_not_an_error(tmp_path, capsys):
    acc = write(tmp_path / "acc.csv", ACC + "t4,a,50\nt4,b,60\n")
    assert main(["leaderboard", "--accuracies", str(acc), "--out", str(tmp_path / "b"), "--n-boot", "20"]) == 0
    assert "skipped t4 (*): 2 model(s) with an accuracy; the protocol needs 3" in capsys.readouterr().err
    skipped = pd.read_csv(tmp_path / "b" / "selection_skipped.csv")
    assert list(skipped["task"]) == ["t4"]


def test_accuracies_refuse_the_tasks_protocol_and_scores_need_accuracies(tmp_path, capsys):
    acc = write(tmp_path / "acc.csv", ACC)
    assert main(["leaderboard", "--accuracies", str(acc), "--protocol", "tasks", "--out", str(tmp_path)]) == 2
    assert main(["leaderboard", "--tables", str(tmp_path), "--scores", str(acc)]) == 2
    err = capsys.readouterr().err
    assert "use --protocol models" in err and "--scores goes with --accuracies" in err


def test_the_readme_table_of_the_zoo_boards_is_their_csv():
    """Hand-typed numbers drift: every row of the README's model-selection table is read back from
    the board it names, and every row of those boards is in the README."""
    import re

    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(sfda_group\d)` \| `(\w+)` \| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$", readme, re.M)
    expected = []
    for group in ("sfda_group1", "sfda_group2"):
        for r in pd.read_csv(ROOT / "leaderboard" / group / "selection_summary.csv").itertuples():
            expected.append((group, r.estimator, f"{r.weighted_tau:+.2f} [{r.weighted_tau_lo:+.2f}, "
                             f"{r.weighted_tau_hi:+.2f}]", f"{r.rel_at_1:.3f}", f"{r.regret_at_1:.2f}",
                             f"{r.significant}/{r.tasks}"))
    assert rows == expected
    static = pd.read_csv(ROOT / "leaderboard" / "sfda_group1" / "selection_summary.csv").set_index("estimator")
    assert f"mean weighted τ is {static.loc['other_tasks_acc', 'weighted_tau']:.4f}" in readme
    assert f"our {static.loc['imagenet_top1', 'weighted_tau']:.4f}" in readme


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["tasks", "models"])
def test_one_protocol_at_a_time_from_a_board(tmp_path, capsys, protocol):
    board = ROOT / "leaderboard" / "mini"
    assert main(["leaderboard", "--tables", str(board), "--protocol", protocol, "--n-boot", "50",
                 "--out", str(tmp_path)]) == 0
    page = (tmp_path / "leaderboard.md").read_text()
    has_models = "Model selection (`models` protocol)" in page
    assert has_models == (protocol == "models") and (tmp_path / "selection.csv").is_file() == (protocol == "models")
    assert ("ρ⁺" in page) == (protocol == "tasks")
    if protocol == "models":
        assert "3 models: 0.33" in page and "params (baseline)" in page
        per_task = pd.read_csv(tmp_path / "selection.csv")
        assert set(per_task["method"]) == {"full", "bitfit", "attention", "lora", "clip_adapter"}


@pytest.mark.e2e
def test_a_zoo_of_image_only_encoders_gets_a_models_board(tmp_path, capsys):
    """Three random-init timm classifiers through run (scores and the `linear` method) to a board: the
    models protocol ranks them by fine-tuned accuracy; no zero-shot accuracy, so no delta and no
    tasks protocol; the board rebuilds from its own tables byte for byte."""
    import json

    suite = tmp_path / "timm_zoo.json"
    suite.write_text(json.dumps({
        "description": "image-only zoo rehearsal", "tasks": ["digits", "mnist", "notmnist"], "methods": ["linear"],
        "encoders": ["timm:test_resnet", "timm:test_vit", "timm:test_efficientnet"], "seeds": [0],
        "n_train": 40, "n_test": 40, "prompts": "single",
        "finetune": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0, "momentum": 0.9, "epochs": 1,
                     "max_steps": None, "batch_size": 20, "val_fraction": 0.1, "max_val": 5000,
                     "templates_per_step": None, "n_ood": 20}}))
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--estimators", "logme,leep,knn,iimm",
                 "--cache-dir", str(tmp_path / "cache"), "--n-jobs", "1"]) == 0
    assert main(["leaderboard", "--results", str(out), "--out", str(tmp_path / "a"), "--n-boot", "50"]) == 0
    assert main(["leaderboard", "--tables", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--n-boot", "50"]) == 0
    assert board_files(tmp_path / "a") == board_files(tmp_path / "b")
    outcomes = pd.read_csv(tmp_path / "a" / "outcomes.csv")
    assert len(outcomes) == 9 and outcomes["correct_zs"].isna().all() and outcomes["correct_ft"].notna().all()
    per_task = pd.read_csv(tmp_path / "a" / "selection.csv")
    assert set(per_task["method"]) == {"linear"} and (per_task["n_models"] == 3).all()
    assert {"logme", "leep", "knn", "other_tasks_acc", "random"} <= set(per_task["estimator"])
    page = (tmp_path / "a" / "leaderboard.md").read_text()
    assert "Model selection (`models` protocol)" in page and "ρ⁺" not in page
    not_scored = pd.read_csv(tmp_path / "a" / "not_scored.csv")
    assert (not_scored[not_scored["estimator"] == "iimm"]["reason"].str.contains("image-only")).all()
