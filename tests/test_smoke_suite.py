"""The whole pipeline on the smoke suite: scores, fine-tuning outcomes, evaluator, leaderboard.
Checks the leaderboard's content, that a rerun changes no file, and partial results."""
import shutil

import pandas as pd
import pytest

from benchmark.cli import main
from estimators import list_estimators

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("smoke"), tmp_path_factory.mktemp("cache")
    args = ["run", "--suite", "smoke", "--out", str(out), "--cache-dir", str(cache), "--n-jobs", "1"]
    assert main(args) == 0
    return out, args


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_leaderboard_ranks_every_estimator_with_its_statistics(run_dir):
    out, _ = run_dir
    page = (out / "leaderboard.md").read_text()
    assert "PARTIAL" not in page
    # random weights: the board says first that it checks the pipeline and ranks nothing (issue 21)
    assert page.splitlines()[2].startswith("> **PIPELINE CHECK, NOT A RESULT**")
    section = page.split("## In-domain gain over zero-shot error (id_gain_norm)")[1].split("## ")[0]
    ranked = [line.split("|")[2].strip().split(" ")[0].strip("*") for line in section.splitlines()
              if line.startswith("| ") and not line.startswith("| #")]
    assert sorted(ranked) == sorted(n for n in list_estimators() if n != "ncti")  # one encoder: no NCTI pool
    for heading in ("## In-domain gain (id_gain", "## Out-of-domain change", "## Per fine-tuning method",
                    "## Per encoder", "## Provenance", "## Estimator run time"):
        assert heading in page
    assert "- suite: `smoke`" in page and "- methods: attention, bitfit, clip_adapter, full, lora" in page
    assert "- tasks: digits, mnist, notmnist" in page
    stats = pd.read_csv(out / "stats.csv")
    assert set(stats["method"]) == {"attention", "bitfit", "clip_adapter", "full", "lora"}
    assert set(stats["outcome"]) == {"id_gain", "id_gain_norm", "ood_change"}
    assert (stats["n"] == 3).all()
    outcomes = pd.read_csv(out / "outcomes.csv")
    assert len(outcomes) == 15 and outcomes["id_gain"].between(-1, 1).all()
    for name in ("id_gain", "id_gain_norm", "ood_change"):
        assert (out / "plots" / f"scatter_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_changes_no_file(run_dir):
    out, args = run_dir
    before = snapshot(out)
    assert main(args) == 0
    assert snapshot(out) == before


def test_partial_results_give_a_partial_leaderboard(run_dir, tmp_path, capsys):
    out, _ = run_dir
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    next((partial / "outcomes").glob("smoke__full__digits*.json")).unlink()
    assert main(["leaderboard", "--results", str(partial)]) == 0
    assert "partial results: missing 1 of 15 fine-tuning cells" in capsys.readouterr().err
    assert "**PARTIAL**" in (partial / "leaderboard.md").read_text()


def test_a_folder_without_cells_or_a_file_is_bad_input(tmp_path, capsys):
    """Issue 21: an empty or wrong folder is an error, not a board that says "missing no ... outcomes"."""
    assert main(["leaderboard", "--results", str(tmp_path)]) == 2
    assert "holds no result cells" in capsys.readouterr().err
    (tmp_path / "f.txt").write_text("x")
    assert main(["leaderboard", "--results", str(tmp_path / "f.txt")]) == 2
    assert "is a file, not a results folder" in capsys.readouterr().err


def test_run_ends_with_the_boards_own_top_rows():
    """Issue 21: the summary is the board's ranking table, in the board's format, not a raw pandas table."""
    from benchmark.cli.run import top_of_board

    page = "# b\n\n## Title\n\n| # | e |\n|---|---|\n| 1 | a |\n| 2 | b |\n| 3 | c |\n\nnotes\n"
    assert top_of_board(page, "Title", rows=2) == "Title\n| # | e |\n|---|---|\n| 1 | a |\n| 2 | b |\n" \
                                                   "... (1 more rows on the board)"
