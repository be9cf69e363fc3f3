"""`python -m benchmark score` and `ls`: outputs, and one clear line with exit status 2 on bad input."""
import json

import numpy as np
import pytest

from benchmark.cli import main


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    labels = np.repeat(np.arange(4), 15)
    path = tmp_path / "emb.npz"
    np.savez(path, image_features=centres[labels] + 0.3 * rng.normal(size=(60, 16)), labels=labels,
             text_features=centres, logit_scale=np.float64(100.0))
    return path


def write(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_json_has_score_and_seconds_per_estimator(npz, capsys):
    assert main(["score", "--embeddings", str(npz), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 60 and report["n_classes"] == 4
    assert {"iimm", "logme", "leep", "zero_shot_acc"} <= set(report["estimators"])
    for entry in report["estimators"].values():
        assert np.isfinite(entry["score"]) and entry["seconds"] >= 0
    assert report["estimators"]["zero_shot_acc"]["score"] == pytest.approx(1.0)


def test_missing_needs_are_listed_as_skipped(tmp_path, capsys):
    rng = np.random.default_rng(1)
    path = write(tmp_path, image_features=rng.normal(size=(30, 8)), labels=np.repeat(np.arange(3), 10))
    assert main(["score", "--embeddings", path, "--estimators", "iimm,iimm_intra,leep", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["estimators"]) == {"iimm_intra"}
    assert "text features" in report["skipped"]["iimm"]
    assert "logit_scale" in report["skipped"]["leep"]


def test_table_and_csv(npz, capsys):
    assert main(["score", "--embeddings", str(npz), "--estimators", "iimm*"]) == 0
    table = capsys.readouterr().out
    assert "iimm_inter" in table and "seconds" in table
    assert main(["score", "--embeddings", str(npz), "--estimators", "iimm", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "estimator,score,seconds,better" and lines[1].startswith("iimm,")


def test_several_files_score_pool_relative_estimators(npz, tmp_path, capsys):
    rng = np.random.default_rng(2)
    other = write(tmp_path, "other.npz", image_features=rng.normal(size=(60, 16)),
                  labels=np.repeat(np.arange(4), 15), text_features=rng.normal(size=(4, 16)))
    assert main(["score", "--embeddings", str(npz), other, "--estimators", "ncti,iimm", "--format", "json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [set(r["estimators"]) for r in reports] == [{"ncti", "iimm"}] * 2


def test_ls_estimators(capsys):
    assert main(["ls", "estimators", "iimm*"]) == 0
    out = capsys.readouterr().out
    assert "iimm_intra" in out and "logme" not in out


X = np.random.default_rng(3).normal(size=(20, 4))
Y = np.repeat(np.arange(4), 5)


@pytest.mark.parametrize("arrays, message", [
    (dict(image_features=np.where(np.eye(20, 4) == 1, np.nan, X), labels=Y), "NaN or inf"),
    (dict(image_features=X, labels=np.r_[Y[:-1], 9], text_features=X[:4]), "must lie in"),
    (dict(image_features=X, labels=Y[:10]), "10 entries"),
    (dict(image_features=X, labels=np.zeros(20, int)), "single class"),
    (dict(image_features=X), "missing key"),
    (dict(image_features=X, labels=np.r_[np.zeros(19, int), 1]), "per class"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, arrays, message):
    assert main(["score", "--embeddings", write(tmp_path, **arrays)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_not_an_npz_file(tmp_path, capsys):
    path = tmp_path / "features.csv"
    path.write_text("1,2,3\n")
    assert main(["score", "--embeddings", str(path)]) == 2
    assert "not an .npz file" in capsys.readouterr().err


def test_unknown_estimator_suggests_a_name(npz, capsys):
    assert main(["score", "--embeddings", str(npz), "--estimators", "logmee"]) == 2
    assert "did you mean 'logme'" in capsys.readouterr().err


def test_issue_21_inputs_that_crashed_are_one_line(tmp_path, capsys):
    """A non-numeric logit_scale in an npz, and seeds numpy and torch cannot take."""
    from benchmark.cli import main

    rng = np.random.default_rng(0)
    path = tmp_path / "bad_scale.npz"
    np.savez(path, image_features=rng.normal(size=(20, 8)), labels=np.repeat(np.arange(4), 5),
             logit_scale=np.array("high"))
    assert main(["score", "--embeddings", str(path)]) == 2
    assert "logit_scale must be a number" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--seeds", "5000000000", "--out", str(tmp_path / "r")]) == 2
    assert "--seeds must be below 2**32" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--seeds", "0,0", "--out", str(tmp_path / "r")]) == 2
    assert "lists a seed twice" in capsys.readouterr().err
    assert main(["finetune", "--encoder", "smoke", "--method", "full", "--task", "digits", "--seed", "5000000000",
                 "--suite", "smoke", "--out", str(tmp_path / "r")]) == 2
    assert "--seed must be below 2**32" in capsys.readouterr().err
    suite = tmp_path / "big_seed.json"
    suite.write_text('{"encoders": ["smoke"], "tasks": ["digits"], "methods": ["full"], "seeds": [5000000000]}')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "r")]) == 2
    assert "0..2**32-1" in capsys.readouterr().err


def test_files_of_different_tasks_are_not_pooled(tmp_path):
    """Issue 21: NCTI over embeddings of different tasks is meaningless; it is skipped with the reason."""
    from benchmark.scoring import score_all
    from estimators.checks import synthetic

    a, b = synthetic("separable", seed=1), synthetic("separable", n_classes=3, seed=2)
    scores, missed = score_all({"a": a, "b": b}, ["ncti", "iimm"])
    assert {s.estimator for s in scores} == {"iimm"}
    assert {(m.estimator, m.status) for m in missed} == {("ncti", "skipped")}
    assert "not of one task" in missed[0].reason
    scores, missed = score_all({"a": a, "c": synthetic("overlapping", seed=3)}, ["ncti"])
    assert len(scores) == 2 and missed == []


def test_an_npy_format_3_header_is_refused_before_loading(tmp_path, capsys):
    """Issue 21: a format 3.0 member claiming 1e11 rows used to reach the allocator."""
    import io
    import zipfile

    from benchmark.cli import main

    def member(array_header: dict, version=(1, 0)) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, array_header)  # writes a 2.0 header ...
        raw = bytearray(buf.getvalue())
        raw[6:8] = bytes(version)  # ... relabelled as the version under test
        return bytes(raw)

    path = tmp_path / "v3.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("image_features.npy", member({"shape": (10**11, 8), "fortran_order": False,
                                                 "descr": "<f4"}, (3, 0)))
        z.writestr("labels.npy", member({"shape": (10**11,), "fortran_order": False, "descr": "<i8"}, (3, 0)))
    assert main(["score", "--embeddings", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is stored in .npy format 3.0" in err and err.count("\n") == 1


def test_a_negative_random_state_and_a_folder_of_embeddings_are_one_line(tmp_path, capsys):
    """Issue 21's smaller gaps: checked up front, named plainly."""
    from benchmark.cli import main

    assert main(["score", "--embeddings", str(tmp_path), "--random-state", "-1"]) == 2
    assert "--random-state must be at least 0, got -1" in capsys.readouterr().err
    assert main(["score", "--embeddings", str(tmp_path)]) == 2
    assert "is a folder; --embeddings takes .npz files" in capsys.readouterr().err
