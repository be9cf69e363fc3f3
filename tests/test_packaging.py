"""The wheel carries the code and its data files (suites, task definitions, model configs), not the
published boards' result cells."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_package_data_and_no_result_cells(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert not [n for n in names if n.startswith("leaderboard/") and n.count("/") > 1]
    assert "leaderboard/render.py" in names and "benchmark/suites/mini.json" in names
    definitions = list((ROOT / "tasks" / "definitions").glob("*.json"))
    assert len([n for n in names if n.startswith("tasks/definitions/")]) == len(definitions)
    assert "encoders/configs/tb-smoke.json" in names
