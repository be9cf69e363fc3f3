"""Suites are data files: the built-in ones give the cells they gave as Python constants, a user's
file is checked key by key (one line, exit 2), and ``ls suites`` and the help come from the files."""
from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from benchmark.cli import build_parser, main
from benchmark.finetune.outcomes import outcome_path
from benchmark.grid import Context, plan, pool_spec, score_path
from benchmark.store.results import cell_path
from benchmark.suites import SUITES, get_suite
from encoders.cache import spec_key
from encoders.extract import cache_spec
from tasks import get_task

# The estimators whose versions entered the score specs below.
ESTIMATORS = ("gbc", "gbc_spherical", "hscore", "hscore_reg", "iimm", "iimm_inter", "iimm_intra", "knn", "leep",
              "linear_probe", "logme", "modality_gap", "nce", "ncti", "nleep", "random", "sfda", "transrate",
              "zero_shot_acc")
# Cell files computed with the suites as Python constants (benchmark/suites.py and the presets of
# benchmark/finetune.py, before they became JSON files); a changed spec changes these names.
KNOWN_CELLS = {
    "mini": ["scores/conse-lite1__gtsrb__df74348acc25.json",
             "outcomes/conse-lite0__lora__cifar10__seed0__fd3dadd38569.json",
             "outcomes/conse-lite0__bitfit__digits__seed0__1ebc453d76c4.json",
             "outcomes/conse-lite1__clip_adapter__notmnist__seed0__892f374a5078.json",
             "outcomes/conse-lite2__attention__flowers__seed0__fd725e100867.json",
             "outcomes/conse-lite2__full__pneumoniamnist__seed0__40f34fc6dd3f.json",
             "pool_scores/mnist__9b27b5ecaa6c.json"],
    "smoke": ["scores/smoke__digits__4222c3a994dd.json", "outcomes/smoke__lora__mnist__seed0__1bc960910fb0.json",
              "pool_scores/mnist__f450faedcff6.json"],
    "paper": ["scores/vitb16-siglip-webli__sun397__90696c9640c6.json",
              "outcomes/vitb32-openai__lora__cars__seed0__cceba1805986.json",
              "outcomes/eva02-b16-merged2b__clip_adapter__svhn__seed0__23d9bb308ed2.json"],
}
# Embedding-cache specs (their sha256, before the cache's schema version) of the suites' first task
# (train, test) for a stand-in encoder.
KNOWN_CACHE = {"mini": ("cifar10", "de2b87926a4aed8bdc169c02798bf7faa6444adcfeb573c8034c4ab04ad4b2d4",
                        "4cea5f08e584b776775d57d77d539857d03dead37d92cbb9a9824da67e89ff9b"),
               "smoke": ("digits", "0a260e04b564d00d161e0f72c0c969fa31a7dd6b2c89e11dcb281a3d890e4636",
                         "7c1b40b95cbc33e3b73718d0f0361c488a014a070851d216f5c8e8ec09476c1f"),
               "paper": ("cars", "6574e26ae0be093ba336de56d5bd87e819cabec1530e1bb002dd63f987a1da6a",
                         "6e6a083e1b30cd6f705ed64b2a32f828c43c4d5c9e6974976dd33ce94f3982c0")}
STAND_IN = types.SimpleNamespace(id="E", weights_tag="W", preprocess_cfg=lambda: {"p": 1})


def cell_files(suite) -> set[str]:
    """Every score, outcome and pool cell file of ``suite`` (relative to its results folder)."""
    out = Path("OUT")
    ctx = Context(suite, ESTIMATORS, out)
    cells = plan(suite)
    files = {score_path(ctx, c) for c in cells}
    files |= {outcome_path(out, c.encoder, m, c.task, s, suite.tasks, suite.finetune)
              for c in cells for m in suite.methods for s in suite.seeds}
    files |= {cell_path(out, "pool_scores", t, pool_spec(ctx, t, list(suite.encoders))) for t in suite.tasks}
    return {str(f.relative_to(out)) for f in files}


# The mini suite had these 9 tasks when its cells were recorded (issue 12 added three; an outcome
# cell's key holds the suite's task list, its out-of-domain set).
RECORDED_TASKS = {"mini": ["cifar10", "cifar10_animals", "cifar10_vehicles", "digits", "flowers", "gtsrb", "mnist",
                           "notmnist", "pneumoniamnist"]}


@pytest.mark.parametrize("name", sorted(KNOWN_CELLS))
def test_builtin_suites_give_the_cells_they_gave_as_python_constants(name, tmp_path):
    suite = get_suite(name)
    if name in RECORDED_TASKS:
        data = json.loads(SUITES.get(name).read_text())
        data["tasks"] = RECORDED_TASKS[name]
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        suite = get_suite(str(tmp_path / f"{name}.json"))
    files = cell_files(suite)
    assert set(KNOWN_CELLS[name]) <= files
    n_cells = len(suite.encoders) * len(suite.tasks)
    assert len(files) == n_cells * (1 + len(suite.methods) * len(suite.seeds)) + len(suite.tasks)
    task, train, test = KNOWN_CACHE[name]
    keys = [spec_key(cache_spec(STAND_IN, get_task(task), split, n, suite.seeds[0], suite.prompts))
            for split, n in (("train", suite.n_train), ("test", suite.n_test))]
    assert keys == [train, test]


def test_a_copy_of_a_builtin_suite_file_is_the_same_suite(tmp_path):
    source = SUITES.get("smoke")
    copy = tmp_path / "smoke.json"
    copy.write_text(source.read_text())
    assert get_suite(str(copy)) == get_suite("smoke")


def test_a_minimal_suite_file_takes_the_documented_defaults(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"encoders": ["smoke"], "tasks": ["digits"]}))
    suite = get_suite(str(path))
    assert (suite.name, suite.seeds, suite.n_train, suite.n_test, suite.prompts) == ("mine", (0,), 500, 500,
                                                                                     "ensemble")
    assert suite.methods == ("attention", "bitfit", "clip_adapter", "full", "linear", "lora")
    config = suite.finetune
    assert (config.optimizer, config.lr, config.epochs, config.batch_size, config.n_ood) == ("adamw", 1e-4, 2, 32, 200)
    assert (config.n_train, config.n_test, config.prompts, config.sample_seed) == (500, 500, "ensemble", 0)


@pytest.mark.e2e
@pytest.mark.parametrize("content, key, problem", [
    ({"encoder": ["smoke"], "tasks": ["digits"]}, "encoder", "unknown key (did you mean 'encoders'?"),
    ({"tasks": ["digits"]}, "encoders", "missing"),
    ({"encoders": "smoke", "tasks": ["digits"]}, "encoders", "must be a non-empty list of distinct encoder ids"),
    ({"encoders": ["smoke"], "tasks": ["digit"]}, "tasks", "unknown task 'digit'; did you mean 'digits'"),
    ({"encoders": ["smoke"], "tasks": ["nowhere.json"]}, "tasks", None),
    ({"encoders": ["smoke"], "tasks": ["digits", "digits"]}, "tasks", "distinct"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "methods": ["lorra"]}, "methods", "did you mean 'lora'?"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "seeds": [0, -1]}, "seeds", "integers in 0..2**32-1"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "n_train": 0}, "n_train", "null (the whole split) or an integer"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "prompts": "all"}, "prompts", "one of ensemble, single"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"lr": -1}}, "finetune.lr", "must be a number > 0"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"learning_rate": 1}}, "finetune.learning_rate",
     "unknown key"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"n_train": 5}}, "finetune.n_train",
     "set by the suite's own 'n_train'"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"lora_rank": 8}}, "finetune.lora_rank",
     "a hyper-parameter of method 'lora': set it in \"overrides\""),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"overrides": {"lora": {"lora_rank": 0}}}},
     "finetune.lora_rank", "lora_rank must be an integer >= 1"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"overrides": {"lorra": {}}}},
     "finetune.overrides.lorra", "did you mean 'lora'?"),
    ({"encoders": ["smoke"], "tasks": ["digits"], "finetune": {"sweep": {"lr": []}}}, "finetune.sweep.lr",
     "non-empty list"),
])
def test_a_bad_suite_file_is_one_line_naming_file_and_key_and_status_2(tmp_path, capsys, content, key, problem):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--no-finetune"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: suite file {path}: key {key!r}: "), err
    if problem:
        assert problem in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [("{", "cannot read it as JSON"), ("[]", "must hold one JSON object")])
def test_a_suite_file_that_is_no_json_object(tmp_path, capsys, text, message):
    (tmp_path / "bad.json").write_text(text)
    assert main(["check", "--suite", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.e2e
def test_an_unknown_encoder_id_stops_before_any_work(tmp_path, capsys):
    path = tmp_path / "enc.json"
    path.write_text(json.dumps({"encoders": ["smoke", "smokey"], "tasks": ["digits"]}))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "unknown encoder 'smokey'; did you mean 'smoke'?" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ls_suites_reads_the_files(capsys):
    assert main(["ls", "suites", "--format", "json"]) == 0
    rows = {r["suite"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ["mini", "paper", "smoke"]
    assert [rows["mini"][k] for k in ("encoders", "tasks", "methods", "seeds", "n_train")] == [3, 12, 5, 1, 500]
    assert [rows["paper"][k] for k in ("encoders", "tasks", "n_train")] == [4, 10, 5000]


def test_help_lists_come_from_the_registries():
    from benchmark.finetune.methods import METHODS, Method
    from benchmark.store.backends import BACKENDS

    with METHODS.scoped(), SUITES.scoped():
        METHODS.register("toy_method")(type("Toy", (Method,), {}))
        SUITES.register("toy_suite")(SUITES.get("smoke"))
        run = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    flat = " ".join(run.split())
    assert "(attention, bitfit, clip_adapter, full, linear, lora, toy_method;" in flat
    assert "a built-in suite (mini, paper, smoke, toy_suite)" in flat
    assert "{" + ",".join(BACKENDS) + "}" in flat


@pytest.mark.e2e
def test_run_takes_any_encoder_id_and_a_task_file_on_the_command_line(tmp_path, capsys):
    from tasks import TASKS
    from tests.test_user_tasks import task_file, write_folder

    with TASKS.scoped():  # the task file's task stays in this test
        write_folder(tmp_path / "images")
        path = task_file(tmp_path)
        assert main(["run", "--suite", "smoke", "--encoders", "open_clip:tb-smoke", "--tasks", f"digits,{path}",
                     "--estimators", "iimm", "--no-finetune", "--n-jobs", "1", "--out", str(tmp_path / "out"),
                     "--cache-dir", str(tmp_path / "cache")]) == 0
        cells = sorted(p.name.rsplit("__", 1)[0] for p in (tmp_path / "out" / "scores").glob("*.json"))
        assert cells == ["open_clip-tb-smoke__colours", "open_clip-tb-smoke__digits"]
        # the folder's 9 train images are fewer than the suite's n_train: said once (issue 21)
        assert capsys.readouterr().err.count("task colours: its train split has 9 images, fewer than n_train=100") == 1
        assert "no task of suite 'smoke' matches 'cifar*'" in _run_error(tmp_path, capsys, "--tasks", "cifar*")
        assert "unknown encoder 'open_clp:tb-smoke'" in _run_error(tmp_path, capsys, "--encoders", "open_clp:tb-smoke")


def _run_error(tmp_path, capsys, *args) -> str:
    assert main(["run", "--suite", "smoke", *args, "--no-finetune", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err
