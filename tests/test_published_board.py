"""The published ``mini`` board: its result cells are committed beside it, cover every
(encoder, method, task) of the suite with three seeds, and re-render it byte for byte, as do
the board's own tables."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.suites import get_suite

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop

BOARD = Path(__file__).resolve().parents[1] / "leaderboard" / "mini"
CELLS = ("scores", "outcomes", "pool_scores")
SEEDS = (0, 1, 2)


def rendered(folder: Path) -> dict:
    """The board's files (not the result cells, not ``run``'s zero_shot.md)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in CELLS and p.name != "zero_shot.md"}


def test_the_committed_cells_cover_the_suite_with_three_seeds():
    suite = get_suite("mini")
    cells = [json.loads(p.read_text()) for p in (BOARD / "outcomes").glob("*.json")]
    have = sorted((c["encoder"], c["method"], c["target"], c["seed"]) for c in cells)
    assert have == sorted((e, m, t, s) for e in suite.encoders for m in suite.methods for t in suite.tasks
                          for s in SEEDS)
    assert all(c["eval_tasks"] == [t for t in suite.tasks if t != c["target"]] for c in cells)
    scores = [json.loads(p.read_text()) for p in (BOARD / "scores").glob("*.json")]
    assert sorted((s["encoder"], s["task"]) for s in scores) == sorted(
        (e, t) for e in suite.encoders for t in suite.tasks)
    assert len(list((BOARD / "pool_scores").glob("*.json"))) == len(suite.tasks)


@pytest.mark.parametrize("source", ["--results", "--tables"])
def test_the_board_re_renders_byte_for_byte(tmp_path, capsys, source):
    assert main(["leaderboard", source, str(BOARD), "--out", str(tmp_path)]) == 0
    assert rendered(tmp_path) == rendered(BOARD)
