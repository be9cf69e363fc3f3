"""`python -m benchmark run`'s score stage on the smoke suite: result files, resume, backends, bad names.
The whole pipeline (fine-tuning and leaderboard included) is tested in test_smoke_suite.py."""
import json

import pytest

from benchmark.cli import main
from benchmark.store.results import read_all

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("cache")
    args = ["run", "--suite", "smoke", "--out", str(out), "--cache-dir", str(cache),
            "--estimators", "iimm*,logme,zero_shot_acc,ncti", "--no-finetune", "--n-jobs", "1"]
    assert main(args) == 0
    return out, args


def test_one_result_file_per_cell_with_scores(smoke_run):
    out, _ = smoke_run
    results = read_all(out, "scores")
    assert sorted(r["task"] for r in results) == ["digits", "mnist", "notmnist"]
    for r in results:
        assert set(r["scores"]) == {"iimm", "iimm_inter", "iimm_intra", "logme", "zero_shot_acc"}
        assert r["n_train"] == 100 and r["n_test"] == 100
        assert 0.0 <= r["zero_shot_acc_test"] <= 1.0 and r["chance"] == pytest.approx(0.1)
        assert r["spec"]["estimators"]["iimm"] == "1" and r["date"]
    # one encoder only: the pool-relative NCTI has nothing to compare against and writes nothing
    assert read_all(out, "pool_scores") == []
    table = (out / "zero_shot.md").read_text()
    assert "| smoke" in table and "chance" in table and "digits" in table


def test_rerun_skips_finished_cells_and_changes_nothing(smoke_run, capsys):
    out, args = smoke_run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(args) == 0
    assert "(3 already done)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_limit_and_filters(tmp_path, capsys):
    assert main(["run", "--suite", "smoke", "--tasks", "dig*", "--limit", "1", "--out", str(tmp_path),
                 "--cache-dir", str(tmp_path / "cache"), "--estimators", "iimm", "--no-finetune"]) == 0
    assert [json.loads(p.read_text())["task"] for p in (tmp_path / "scores").glob("*.json")] == ["digits"]


@pytest.mark.parametrize("args, message", [
    (["--suite", "smok"], "did you mean 'smoke'"),
    (["--suite", "smoke", "--tasks", "cifar*"], "no task of suite 'smoke' matches"),
    (["--suite", "smoke", "--estimators", "iim"], "did you mean 'iimm'"),
    (["--suite", "smoke", "--methods", "lorra"], "did you mean 'lora'"),
    (["--suite", "smoke", "--seeds", "one"], "comma-separated integers"),
])
def test_bad_names_are_one_line_and_status_2(tmp_path, capsys, args, message):
    assert main(["run", *args, "--out", str(tmp_path), "--no-finetune"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_smoke_grid_on_a_local_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster:
        assert main(["run", "--suite", "smoke", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                     "--estimators", "iimm,logme", "--no-finetune", "--backend", "dask", "--scheduler",
                     cluster.scheduler_address]) == 0
    assert sorted(r["task"] for r in read_all(tmp_path, "scores")) == ["digits", "mnist", "notmnist"]


@pytest.mark.parametrize("args, message", [
    (["finetune", "--encoder", "smoke", "--method", "ful", "--task", "digits"], "did you mean 'full'"),
    (["finetune", "--encoder", "smoke", "--method", "full", "--task", "digit"], "did you mean 'digits'"),
    (["embed", "--encoder", "smok", "--task", "digits"], "did you mean 'smoke'"),
])
def test_other_commands_reject_unknown_names(tmp_path, capsys, args, message):
    assert main([*args, "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_finetune_command_writes_one_cell_and_prints_its_deltas(tmp_path, capsys):
    args = ["finetune", "--suite", "smoke", "--encoder", "smoke", "--method", "clip_adapter", "--task", "digits",
            "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert line.startswith("smoke clip_adapter on digits (seed 0): accuracy ") and "over 2 other task(s)" in line
    [record] = read_all(tmp_path, "outcomes")
    assert record["method"] == "clip_adapter" and set(record["acc_ft"]) == {"digits", "mnist", "notmnist"}
