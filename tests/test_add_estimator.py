"""Adding an estimator to an existing results folder costs only its own scores (issue 21): the stored
score cells are extended in place, no other estimator's entry is recomputed or rewritten, the folder
holds one generation per cell, the result equals a from-scratch run with the estimator, and a changed
``version`` recomputes that estimator only."""
from __future__ import annotations

import sys
import textwrap

import pytest

from benchmark import grid
from benchmark.cli import main
from benchmark.store.results import read_all
from estimators import ESTIMATORS

pytestmark = pytest.mark.e2e

PLUGIN = textwrap.dedent('''
    import numpy as np
    from estimators import Estimator, register_estimator


    @register_estimator("added_est")
    class Added(Estimator):
        """Mean squared norm of the class means (a test estimator added to an existing board)."""
        version = "{version}"
        description, citation = "test estimator", "none"

        def compute(self, emb):
            x = emb.image.astype(np.float64)
            return float(np.mean([np.sum(x[emb.labels == c].mean(0) ** 2) for c in np.unique(emb.labels)]))
''')


def run(out, cache, estimators, *plugin):
    return main(["run", "--suite", "smoke", "--tasks", "digits,mnist", "--no-finetune", "--n-jobs", "1",
                 "--estimators", estimators, "--out", str(out), "--cache-dir", str(cache),
                 *(["--plugins", str(plugin[0])] if plugin else [])])


def cells(out) -> dict:
    return {(r["encoder"], r["task"]): r for r in read_all(out, "scores")}


def test_an_added_estimator_extends_the_stored_cells(tmp_path, capsys):
    cache = tmp_path / "cache"
    with ESTIMATORS.scoped():
        assert run(tmp_path / "board", cache, "iimm,logme") == 0
        before = cells(tmp_path / "board")
        plugin = tmp_path / "added.py"
        plugin.write_text(PLUGIN.format(version="1"))
        assert run(tmp_path / "board", cache, "iimm,logme,added_est", plugin) == 0
        after = cells(tmp_path / "board")
        assert len(list((tmp_path / "board" / "scores").glob("*.json"))) == len(before) == 2  # one generation
        for key, old in before.items():
            new = after[key]
            assert set(new["scores"]) == {"iimm", "logme", "added_est"}
            assert {k: new["scores"][k] for k in ("iimm", "logme")} == old["scores"]  # seconds too: not rerun
        assert run(tmp_path / "scratch", cache, "iimm,logme,added_est", plugin) == 0
        scratch = cells(tmp_path / "scratch")
        assert {k: r["scores"]["added_est"]["score"] for k, r in after.items()} == \
            {k: r["scores"]["added_est"]["score"] for k, r in scratch.items()}
        # a new version of the added estimator recomputes it alone
        plugin.write_text(PLUGIN.format(version="2"))
        sys.modules.pop("transferbench_plugin_added", None)
        grid._plugins_loaded.discard(str(plugin))
        ESTIMATORS._entries.pop("added_est", None)  # the plugin is imported again, as by a new process
        assert run(tmp_path / "board", cache, "iimm,logme,added_est", plugin) == 0
        bumped = cells(tmp_path / "board")
        for key, r in bumped.items():
            assert r["spec"]["estimators"]["added_est"] == "2" and r["scores"]["iimm"] == before[key]["scores"]["iimm"]
        # a run that selects fewer estimators finds the cells done and rewrites nothing
        stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "board" / "scores").glob("*.json")}
        assert run(tmp_path / "board", cache, "iimm") == 0
        assert {p: p.stat().st_mtime_ns for p in (tmp_path / "board" / "scores").glob("*.json")} == stamps
        assert "2 score cells planned (2 already done)" in capsys.readouterr().err
