"""The README walk-through "Your models on your data", exactly: a suite file, two task files over
image folders this test writes, ``run --suite my_suite.json``, its leaderboard, a rerun that
changes no file, the board re-rendered from the results folder without torch, and one line with
exit status 2 for a broken suite file, task file or image folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from benchmark.cli import main

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop

ROOT = Path(__file__).resolve().parents[1]
MY_SUITE = """\
{
  "description": "my encoders on my image folders",
  "encoders": ["smoke"],
  "tasks": ["shapes.json", "stripes.json", "digits"],
  "methods": ["lora", "clip_adapter"],
  "seeds": [0],
  "n_train": 40,
  "n_test": 20,
  "prompts": "ensemble",
  "finetune": {"lr": 0.01, "epochs": 5, "batch_size": 8, "n_ood": 20,
               "overrides": {"clip_adapter": {"epochs": 10}}}
}
"""
SHAPES = """\
{
  "loader": "imagefolder",
  "loader_args": {"path": "shapes"},
  "classnames": ["circle", "square", "triangle"],
  "templates": ["a photo of a {c}.", "a drawing of a {c}."]
}
"""
STRIPES = """\
{
  "loader": "imagefolder",
  "loader_args": {"path": "stripes"},
  "templates": ["a photo of {c} stripes."]
}
"""
FILES = {"my_suite.json": MY_SUITE, "shapes.json": SHAPES, "stripes.json": STRIPES}


def draw(kind: str, rng: np.random.Generator) -> Image.Image:
    """A 32x32 image of one shape (circle, square, triangle) or stripe direction (horizontal, vertical)."""
    image = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 90, 3)))
    pen = ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    x, y, r = (int(v) for v in rng.integers(10, 22, 3) // (1, 1, 2))
    if kind == "circle":
        pen.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif kind == "square":
        pen.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    elif kind == "triangle":
        pen.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    else:
        step = int(rng.integers(3, 6))
        for at in range(0, 32, 2 * step):
            box = (0, at, 31, at + step - 1) if kind == "horizontal" else (at, 0, at + step - 1, 31)
            pen.rectangle(box, fill=colour)
    return image


def write_example(folder: Path) -> Path:
    """The walk-through's files and image folders (8 training and 4 test images per class) in ``folder``."""
    rng = np.random.default_rng(0)
    for dataset, classes in (("shapes", ("circle", "square", "triangle")), ("stripes", ("horizontal", "vertical"))):
        for split, n in (("train", 8), ("test", 4)):
            for kind in classes:
                (folder / dataset / split / kind).mkdir(parents=True)
                for i in range(n):
                    draw(kind, rng).save(folder / dataset / split / kind / f"{kind}_{i}.png")
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return folder / "my_suite.json"


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    folder = tmp_path_factory.mktemp("walkthrough")
    suite = write_example(folder)
    args = ["run", "--suite", str(suite), "--out", str(folder / "results"), "--cache-dir", str(folder / "cache"),
            "--n-jobs", "1"]
    assert main(args) == 0
    return folder, args


def test_the_run_writes_cells_and_a_leaderboard(example):
    folder, _ = example
    results = folder / "results"
    assert len(list((results / "scores").glob("*.json"))) == 3
    assert len(list((results / "outcomes").glob("*.json"))) == 6  # 3 targets x 2 methods
    page = (results / "leaderboard.md").read_text()
    assert "suite `my_suite`" in page and "PARTIAL" not in page
    outcomes = pd.read_csv(results / "outcomes.csv")
    assert sorted(set(outcomes["task"])) == ["digits", "shapes", "stripes"]
    assert sorted(set(outcomes["method"])) == ["clip_adapter", "lora"]
    zero_shot = (results / "zero_shot.md").read_text()
    assert "| smoke" in zero_shot and "shapes" in zero_shot and "stripes" in zero_shot
    record = json.loads(next((results / "scores").glob("smoke__shapes__*.json")).read_text())
    assert record["n_classes"] == 3 and record["n_train"] == 24 and record["n_test"] == 12
    assert len(record["spec"]["task_data"]) == 64  # the folder's listing is part of the cell's identity


def test_a_rerun_changes_no_file(example, capsys):
    folder, args = example
    before = snapshot(folder)
    assert main(args) == 0
    assert "(3 already done)" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_the_board_rebuilds_from_the_results_folder_without_torch(example):
    folder, _ = example
    code = ("import sys\nfrom benchmark.cli import main\n"
            f"status = main(['leaderboard', '--results', {str(folder / 'results')!r}, '--out', "
            f"{str(folder / 'board')!r}])\n"
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'open_clip')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert (folder / "board" / "leaderboard.md").read_bytes() == (folder / "results" / "leaderboard.md").read_bytes()


BROKEN = [
    ("my_suite.json", lambda t: t.replace('"encoders"', '"encoder"'), "suite file", "key 'encoder': unknown key"),
    ("my_suite.json", lambda t: t.replace('"n_train": 40', '"n_train": "all"'), "suite file", "key 'n_train'"),
    ("shapes.json", lambda t: t.replace('"classnames"', '"class_names"'), "task file",
     "key 'class_names': unknown key (did you mean 'classnames'?"),
    ("shapes.json", lambda t: t.replace('"circle", ', ""), "task file", "key 'classnames': 2 names for the 3"),
    ("stripes.json", lambda t: t.replace('"stripes"}', '"stripe"}'), "task file", "no train/ folder"),
]


@pytest.mark.parametrize("name, edit, kind, problem", BROKEN)
def test_a_broken_file_is_one_line_and_status_2(tmp_path, capsys, name, edit, kind, problem):
    suite = write_example(tmp_path)
    (tmp_path / name).write_text(edit((tmp_path / name).read_text()))
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "results"), "--no-finetune"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: suite file {suite}: ") and kind in err and problem in err


@pytest.mark.parametrize("damage, problem", [
    (lambda f: (f / "shapes" / "test" / "square").rename(f / "shapes" / "test" / "squares"),
     "class folder 'square' is missing from test/"),
    (lambda f: [p.unlink() for p in (f / "stripes" / "test" / "vertical").iterdir()],
     "class 'vertical' has no images in test/"),
    (lambda f: (f / "shapes" / "train" / "circle" / "circle_0.png").write_bytes(b"\x89PNG broken"),
     "cannot decode train/circle/circle_0.png (UnidentifiedImageError"),
])
def test_a_broken_image_folder_is_one_line_and_status_2(tmp_path, capsys, damage, problem):
    suite = write_example(tmp_path)
    damage(tmp_path)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "results"), "--cache-dir",
                 str(tmp_path / "cache"), "--no-finetune", "--n-jobs", "1"]) == 2
    err = capsys.readouterr().err  # beside the progress bar of a run that had started
    assert "Traceback" not in err and err.count("error: ") == 1
    line = err.split("error: ")[1].splitlines()[0]
    assert problem in line and str(tmp_path / "s") in line


def test_the_readme_shows_these_files():
    """Once the README has the walk-through, its JSON blocks are these files, character for character."""
    readme = (ROOT / "README.md").read_text()
    assert "## Your models on your data" in readme, "the README's walk-through heading was renamed or removed"
    section = readme.split("## Your models on your data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    assert blocks == list(FILES.values())
