"""``python -m benchmark select`` end to end: the smoke encoders (random-weight open_clip towers) on a
user's image folder, ranked by every estimator, recommended by a board's most reliable estimator."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from encoders import get_encoder
from encoders.extract import embed
from tasks import get_task

from .test_user_tasks import write_folder

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ["smoke", "rehearsal-vitb32", "rehearsal-siglip"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("select") / "colours", n_train=8, n_test=2)


def test_select_ranks_the_candidates_on_an_image_folder(folder, tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["select", "--task", str(folder), "--encoders", ",".join(CANDIDATES), "--board",
            str(ROOT / "leaderboard" / "mini"), "--json", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--n", "24"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["task"] == "colours" and report["candidates"] == CANDIDATES and report["n_train"] == 24
    # zero-shot accuracy, recomputed by brute force from the cached embeddings
    task = get_task("colours")
    accuracy = {}
    for name in CANDIDATES:
        emb = embed(get_encoder(name), task, "train", n=24, seed=0, cache_dir=tmp_path / "cache", device="cpu")
        accuracy[name] = float(np.mean(np.argmax(emb.image @ emb.text.T, axis=1) == emb.labels))
    ranked = report["rankings"]["zero_shot_acc"]
    assert {r["encoder"]: r["score"] for r in ranked} == pytest.approx(accuracy)
    assert [r["score"] for r in ranked] == sorted(accuracy.values(), reverse=True)
    # a lower-is-better estimator is ranked smallest first
    gap = [r["score"] for r in report["rankings"]["modality_gap"]]
    assert gap == sorted(gap)
    # the recommendation follows the board's most reliable estimator, with its interval
    summary = pd.read_csv(ROOT / "leaderboard" / "mini" / "selection_summary.csv")
    full = summary[summary["method"] == "full"].sort_values("weighted_tau", ascending=False).iloc[0]
    rec = report["recommendation"]
    assert rec["estimator"] == full["estimator"] and rec["weighted_tau"] == pytest.approx(full["weighted_tau"])
    assert rec["encoder"] == report["rankings"][rec["estimator"]][0]["encoder"]
    # ... and says plainly that 3 candidates and this board do not make a reliable choice
    assert any("3 candidates" in w and "33%" in w for w in report["warnings"])
    assert any("cannot tell" in w for w in report["warnings"])
    assert f"recommended: {rec['encoder']}" in text and "warning: with 3 candidates" in text


@pytest.mark.parametrize("argv, message", [
    (["--encoders", "smoke"], "at least 2 distinct encoder ids"),
    (["--encoders", "smoke,nosuchencoder"], "nosuchencoder"),
    (["--encoders", "smoke,rehearsal-vitb32", "--board", "/nonexistent"], "no selection_summary.csv"),
])
def test_bad_select_arguments_are_one_line(folder, tmp_path, capsys, argv, message):
    assert main(["select", "--task", str(folder), "--cache-dir", str(tmp_path), "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
