"""Faults a long run meets (issue 13): plugins under every backend, one failing estimator,
damaged result cells, killed runs, lost Dask workers, edited cache entries, full disks and
bad arguments. Each test reproduces one fault on the real harness (smoke suite, real loky
and Dask workers, real signals, a real file-size limit)."""
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from benchmark import grid as run_module
from benchmark.cli import main
from benchmark.scoring import score_all
from benchmark.store.backends import run_cells
from benchmark.store.results import read_all
from estimators import ESTIMATORS, InvalidInput, get_estimator
from tests.conftest import make_embeddings

pytestmark = pytest.mark.e2e  # end to end: `pytest -m 'not e2e'` is the inner loop

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["run", "--suite", "smoke", "--no-finetune"]

PLUGINS = textwrap.dedent('''
    """Estimators that behave well, return NaN, raise or hang (fault-injection plugins)."""
    import os
    import time

    import numpy as np
    from estimators import Estimator, register_estimator


    @register_estimator("fault_ok")
    class Ok(Estimator):
        """Mean over classes of the squared norm of the class mean."""
        def compute(self, emb):
            x = emb.image.astype(np.float64)
            return float(np.mean([np.sum(x[emb.labels == c].mean(0) ** 2) for c in np.unique(emb.labels)]))


    @register_estimator("fault_nan")
    class NaN(Estimator):
        """Returns NaN."""
        def compute(self, emb):
            return float("nan")


    @register_estimator("fault_raise")
    class Raise(Estimator):
        """Raises."""
        def compute(self, emb):
            raise RuntimeError("plugin bug\\non two lines")


    @register_estimator("fault_hang")
    class Hang(Estimator):
        """Hangs (writes its pid to $FAULT_PID_DIR first, when set)."""
        def compute(self, emb):
            if os.environ.get("FAULT_PID_DIR"):
                open(os.path.join(os.environ["FAULT_PID_DIR"], f"{os.getpid()}.pid"), "w").close()
            time.sleep(60)
            return 0.0
''')


@pytest.fixture
def plugin(tmp_path):
    """The plugin file; its estimators are unregistered afterwards so no other test sees them."""
    path = tmp_path / "fault_plugins.py"
    path.write_text(PLUGINS)
    with ESTIMATORS.scoped():
        yield str(path)
    sys.modules.pop("transferbench_plugin_fault_plugins", None)
    run_module._plugins_loaded.discard(str(path))


def one_error_line(err: str, message: str) -> None:
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def cli(env: dict | None = None, limit_bytes: int | None = None, timeout: int = 120, **popen):
    """``python -m benchmark ARGS`` in a subprocess (optionally with a file-size limit)."""
    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                    **(env or {}))
    return lambda *args: subprocess.Popen([sys.executable, "-m", "benchmark", *args], env=full_env, cwd=ROOT,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          preexec_fn=limit if limit_bytes else None, **popen)


# -- a finished score-only run that the damage tests copy -----------------------------------

@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("scored"), tmp_path_factory.mktemp("cache")
    args = [*SMOKE, "--out", str(out), "--cache-dir", str(cache), "--estimators", "iimm,logme", "--n-jobs", "1"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(args) == 0
    return out, cache, err.getvalue()


def rerun(scored, tmp_path, capsys, damage) -> tuple[Path, str]:
    """Copy the finished run, ``damage(out)`` it, rerun; returns (out, stderr of the rerun)."""
    _, cache, _ = scored
    out = tmp_path / "out"
    shutil.copytree(scored[0], out)
    damage(out)
    capsys.readouterr()
    assert main([*SMOKE, "--out", str(out), "--cache-dir", str(cache), "--estimators", "iimm,logme",
                 "--n-jobs", "1"]) == 0
    return out, capsys.readouterr().err


def score_file(out: Path, task: str) -> Path:
    return next((out / "scores").glob(f"smoke__{task}__*.json"))


# -- 1 and 2: plugins under every backend; one failing estimator keeps the others' scores ---

def test_plugins_and_failing_estimators_under_loky(plugin, tmp_path, capsys):
    from encoders import get_encoder
    from encoders.extract import embed
    from tasks import get_task

    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main([*SMOKE, "--tasks", "digits,mnist", "--estimators", "fault_ok,fault_nan,fault_raise,iimm",
                 "--plugins", plugin, "--backend", "loky", "--n-jobs", "2", "--out", str(out),
                 "--cache-dir", str(cache)]) == 0
    err = capsys.readouterr().err
    assert "estimator fault_nan failed on 2 cell(s)" in err and "estimator fault_raise failed on 2 cell(s)" in err
    for record in read_all(out, "scores"):
        assert set(record["scores"]) == {"fault_ok", "iimm"}
        assert record["failed"]["fault_raise"] == "RuntimeError: plugin bug on two lines"
        assert "non-finite score (nan)" in record["failed"]["fault_nan"]
        emb = embed(get_encoder("smoke"), get_task(record["task"]), "train", n=100, prompts="single",
                    cache_dir=cache, progress=False)
        x = emb.image.astype(np.float64)
        by_hand = np.mean([np.sum(x[emb.labels == c].mean(0) ** 2) for c in range(10)])
        assert record["scores"]["fault_ok"]["score"] == pytest.approx(by_hand, rel=1e-12)
    page = (out / "leaderboard.md").read_text()
    assert "failed on 2 of 2 cells: RuntimeError: plugin bug on two lines" in page
    assert "failed on 2 of 2 cells: fault_nan produced a non-finite score (nan)" in page


def test_plugins_data_root_and_cache_reach_dask_workers(plugin, tmp_path, monkeypatch):
    """Workers whose environment points elsewhere still get the client's plugins, data root and cache."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "client-cache"))
    worker_env = {"TRANSFERBENCH_DATA": str(tmp_path / "no-data"), "TRANSFERBENCH_CACHE": str(tmp_path / "w-cache")}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=worker_env) as cluster:
        assert main([*SMOKE, "--tasks", "mnist", "--estimators", "fault_ok,iimm", "--plugins", plugin,
                     "--backend", "dask", "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "out")]) == 0
    [record] = read_all(tmp_path / "out", "scores")
    assert record["task"] == "mnist" and set(record["scores"]) == {"fault_ok", "iimm"}
    assert list((tmp_path / "client-cache" / "embeddings").rglob("*.safetensors"))
    assert not (tmp_path / "w-cache").exists()


def test_a_hanging_estimator_is_named_then_stopped(plugin):
    from estimators import import_plugin

    import_plugin(plugin)
    lines = []
    start = time.perf_counter()
    scores, failed = score_all({"toy": make_embeddings("separable")}, ["fault_hang", "iimm"], time_limit=1.5,
                               notice_after=0.5, log=lines.append)
    assert time.perf_counter() - start < 10
    assert lines == ["still running: estimator fault_hang on toy after 0.5 s"]
    assert [(f.estimator, f.status, f.reason) for f in failed] == [
        ("fault_hang", "failed", "stopped after the time limit of 1.5 s")]
    assert [s.estimator for s in scores] == ["iimm"]


def test_a_builtin_estimator_on_degenerate_input_fails_alone():
    """A class with one sample is degenerate for the linear probe (cross-validation), not for IIMM."""
    base = make_embeddings("separable")
    labels = base.labels[:61]                        # 20 samples of classes 0-2, one of class 3
    emb = type(base).create(base.image[:labels.size], labels, text=base.text, logit_scale=50.0)
    scores, failed = score_all({"toy": emb}, ["linear_probe", "iimm"], check_sizes=False)
    assert [(f.estimator, f.status) for f in failed] == [("linear_probe", "failed")]
    assert "class 3 has 1" in failed[0].reason
    assert [s.score for s in scores] == [get_estimator("iimm").score(emb)]


# -- 3: damaged result cells are reported by path and recomputed -----------------------------

@pytest.mark.parametrize("damage, reason", [
    (lambda r: r.pop("scores"), "key 'scores' is missing"),
    (lambda r: r.update(n_train="100"), "n_train should be int, got '100'"),
    (lambda r: r["scores"]["iimm"].update(score=None), "scores['iimm'].score should be a finite number, got None"),
])
def test_damaged_cell_is_reported_and_recomputed(scored, tmp_path, capsys, damage, reason):
    def edit(out):
        path = score_file(out, "digits")
        record = json.loads(path.read_text())
        damage(record)
        path.write_text(json.dumps(record))

    out, err = rerun(scored, tmp_path, capsys, edit)
    path = score_file(out, "digits")
    assert f"damaged result file {path} ({reason})" in err and "(2 already done)" in err
    assert json.loads(path.read_text())["scores"]["iimm"]["score"] == \
        json.loads(score_file(scored[0], "digits").read_text())["scores"]["iimm"]["score"]


def test_cell_holding_another_cells_content_is_recomputed(scored, tmp_path, capsys):
    out, err = rerun(scored, tmp_path, capsys,
                     lambda out: shutil.copy(score_file(out, "digits"), score_file(out, "mnist")))
    assert f"damaged result file {score_file(out, 'mnist')} (its spec does not match its file name" in err
    assert "(2 already done)" in err
    assert json.loads(score_file(out, "mnist").read_text())["task"] == "mnist"


def test_leaderboard_leaves_a_damaged_cell_out_and_names_it(scored, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(scored[0], out)
    score_file(out, "digits").write_text('{"schema": 1}')
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"damaged result file {score_file(out, 'digits')} (key 'spec' is missing)" in err
    assert "Traceback" not in err


# -- 4 and 8: a killed run leaves no worker behind; SIGTERM shuts down cleanly ---------------

def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(predicate, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_loky_workers_die_with_a_killed_parent(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from benchmark.store.backends import run_cells

        def hold(i):
            open(os.path.join(sys.argv[1], f"{{os.getpid()}}.pid"), "w").close()
            time.sleep(60)

        run_cells(hold, [0, 1], n_jobs=2, backend="loky")
    """)
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stderr=subprocess.DEVNULL)
    assert wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 60)
    workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not any(map(alive, workers)), 5), "loky workers outlived their killed parent"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigterm_stops_workers_cleanly_without_leak_warnings(plugin, tmp_path):
    proc = cli(env={"FAULT_PID_DIR": str(tmp_path)})(
        *SMOKE, "--tasks", "digits,mnist", "--estimators", "fault_hang", "--plugins", plugin, "--n-jobs", "2",
        "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 90)
    workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "terminated: finished results are kept" in err
    assert "leaked" not in err and "Traceback" not in err
    assert wait_for(lambda: not any(map(alive, workers)), 5)


# -- 5: Dask ---------------------------------------------------------------------------------

def slow_square(x):
    time.sleep(0.5)
    return x * x


def test_a_dask_run_that_loses_every_worker_stops_with_one_line():
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        threading.Timer(1.2, cluster.scale, [0]).start()
        start = time.monotonic()
        with pytest.raises(InvalidInput, match=r"every Dask worker was lost \(.*none for 2 s\): \d of 8 cells "
                                               r"finished and are kept"):
            run_cells(slow_square, list(range(8)), backend="dask", scheduler=cluster.scheduler_address,
                      worker_wait=2)
        assert time.monotonic() - start < 20


def test_a_task_a_worker_lacks_but_the_client_has_is_an_error(tmp_path):
    from benchmark.suites import get_suite

    ctx = run_module.Context(get_suite("smoke"), ("iimm",), tmp_path, data_root=str(tmp_path / "empty"))
    assert set(run_module.unavailable_tasks(ctx, [{"task": "mnist", "unavailable": "no mnist"}])) == {"mnist"}
    ctx = run_module.Context(get_suite("smoke"), ("iimm",), tmp_path, data_root=os.environ["TRANSFERBENCH_DATA"])
    with pytest.raises(InvalidInput, match="task mnist is unavailable on a worker .* but present here"):
        run_module.unavailable_tasks(ctx, [{"task": "mnist", "unavailable": "no mnist"}])


# -- 6: the cache checksum covers the metadata -----------------------------------------------

def test_editing_a_cache_entrys_logit_scale_is_detected(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.numpy import save

    from encoders import get_encoder
    from encoders.cache import ArrayCache
    from encoders.extract import cache_spec, embed
    from tasks import get_task

    encoder, task = get_encoder("smoke"), get_task("digits")
    first = embed(encoder, task, "test", n=20, cache_dir=tmp_path, progress=False)
    path = ArrayCache(tmp_path).path(cache_spec(encoder, task, "test", 20, 0, "ensemble"))
    with safe_open(str(path), framework="numpy") as f:
        header, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header["meta"])
    meta["logit_scale"] *= 1.001
    path.write_bytes(save(arrays, metadata={**header, "meta": json.dumps(meta)}))
    again = embed(encoder, task, "test", n=20, cache_dir=tmp_path, progress=False)
    assert "warning: damaged cache file" in capsys.readouterr().err
    assert again.logit_scale == first.logit_scale


# -- 7: one line and exit 2 instead of a traceback -------------------------------------------

def test_a_full_disk_is_one_line(scored, tmp_path):
    """A real write failure (the file-size limit: EFBIG, the same path as ENOSPC) for the
    embedding cache, the results folder and the leaderboard."""
    board = tmp_path / "board"
    shutil.copytree(scored[0], board)
    start = cli(limit_bytes=600)
    runs = [start(*SMOKE, "--tasks", "digits", "--estimators", "iimm", "--n-jobs", "1", "--out", str(tmp_path / "a"),
                  "--cache-dir", str(tmp_path / "cache")),
            start(*SMOKE, "--tasks", "digits", "--estimators", "iimm", "--n-jobs", "1", "--out", str(tmp_path / "b"),
                  "--cache-dir", str(scored[1])),
            start("leaderboard", "--results", str(board), "--out", str(tmp_path / "fresh_board"))]
    for proc, where in zip(runs, [tmp_path / "cache", tmp_path / "b" / "scores", tmp_path / "fresh_board"]):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        one_error_line(err.splitlines()[-1] + "\n", f"cannot write {where}")
        assert "File too large (free some space" in err and "Traceback" not in err


@contextlib.contextmanager
def read_only_folder(before=lambda folder: None):
    """A folder this process cannot write to (as root: by acting as user nobody meanwhile).
    ``before(folder)`` runs first, with the process's own rights: a clone may sit in a folder only
    its owner can enter, so whatever the code under test reads must be read or copied then."""
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o755)
    (folder / "ro").mkdir(mode=0o555)
    before(folder)
    root = os.geteuid() == 0
    try:
        if root:
            os.seteuid(65534)
        yield folder / "ro"
    finally:
        if root:
            os.seteuid(0)
        shutil.rmtree(folder)


def test_unwritable_out_fails_before_any_work(tmp_path, capsys):
    from benchmark.suites import SUITES

    def readable_by_anyone(folder):
        """The suite file copied beside the folder, and every module the command imports loaded
        by the same command stopping at the same check (--out is a file)."""
        shutil.copy(SUITES.get("smoke"), folder / "smoke.json")
        (folder / "smoke.json").chmod(0o644)
        (tmp_path / "a_file").write_text("x")
        assert main([*SMOKE, "--out", str(tmp_path / "a_file"), "--cache-dir", str(tmp_path / "c")]) == 2
        capsys.readouterr()

    with read_only_folder(readable_by_anyone) as ro:
        run = ["run", "--suite", str(ro.parent / "smoke.json"), "--no-finetune"]
        assert main([*run, "--out", str(ro), "--cache-dir", str(tmp_path / "c")]) == 2
    one_error_line(capsys.readouterr().err, "is not writable: Permission denied")
    (tmp_path / "file").write_text("x")
    assert main([*SMOKE, "--out", str(tmp_path / "file"), "--cache-dir", str(tmp_path / "c")]) == 2
    one_error_line(capsys.readouterr().err, f"--out {tmp_path / 'file'} is a file, not a folder")
    assert not list((tmp_path / "c").rglob("*.safetensors"))


@pytest.mark.parametrize("args, message", [
    ([*SMOKE, "--device", "bogus"], "--device 'bogus' is not a device"),
    ([*SMOKE, "--seeds=-1"], "--seeds must be non-negative"),
    ([*SMOKE, "--limit", "0"], "--limit must be at least 1, got 0"),
    ([*SMOKE, "--limit", "-1"], "--limit must be at least 1, got -1"),
    ([*SMOKE, "--estimator-timeout", "0"], "--estimator-timeout must be a positive"),
    (["finetune", "--suite", "smoke", "--encoder", "smoke", "--method", "full", "--task", "digits", "--seed=-1"],
     "--seed must be at least 0"),
    (["embed", "--encoder", "smoke", "--task", "digits", "--n", "0"], "--n must be at least 1, got 0"),
    (["embed", "--encoder", "smoke", "--task", "digits", "--n", "-5"], "--n must be at least 1, got -5"),
    (["embed", "--encoder", "smoke", "--task", "digits", "--batch-size", "-1"], "--batch-size must be at least 1"),
])
def test_bad_arguments_are_one_line_before_any_work(tmp_path, capsys, args, message):
    assert main([*args, "--out" if args[0] != "embed" else "--cache-dir", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, message)
    assert not (tmp_path / "scores").exists() and not (tmp_path / "embeddings").exists()


def test_cuda_on_a_machine_without_one(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main([*SMOKE, "--device", "cuda", "--out", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, "--device cuda: no CUDA device is available")


def npy(shape, dtype, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def test_npz_header_claiming_a_trillion_elements(tmp_path, capsys):
    path = tmp_path / "huge.npz"
    labels = np.repeat(np.arange(2), 2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("image_features.npy", npy((10 ** 6, 10 ** 6), "<f4", b"\0" * 64))
        z.writestr("labels.npy", npy(labels.shape, "<i8", labels.astype("<i8").tobytes()))
    assert main(["score", "--embeddings", str(path)]) == 2
    one_error_line(capsys.readouterr().err, "image_features claims shape (1000000, 1000000) "
                                            "(4,000,000,000,000 bytes) but holds only 64 bytes")


def test_hscore_beyond_memory_fails_alone_before_allocating(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.npz"
    np.savez(path, image_features=rng.normal(size=(8, 150_000)).astype(np.float32), labels=np.repeat(np.arange(4), 2))
    assert main(["score", "--embeddings", str(path), "--estimators", "hscore,knn", "--format", "csv"]) == 2
    out, err = capsys.readouterr()
    one_error_line(err, "hscore failed: hscore needs about 1005.8 GiB of memory at N=8, D=150000")
    assert out.splitlines()[1].startswith("knn,")


@pytest.mark.parametrize("arrays, message", [
    (dict(image_features=np.eye(6, 4), labels=np.arange(6) % 5, text_features=np.eye(3, 4)),
     "labels go up to 4 but text_features has 3 rows"),
    (dict(image_features=np.eye(6, 4) * (1 + 1j), labels=np.arange(6) % 3), "image_features is complex-valued"),
])
def test_npz_content_errors_say_what_is_wrong(tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "e.npz", **arrays)
    assert main(["score", "--embeddings", str(tmp_path / "e.npz")]) == 2
    one_error_line(capsys.readouterr().err, message)


# -- 8: small things ---------------------------------------------------------------------------

def test_no_finetune_does_not_report_missing_outcomes(scored):
    assert "partial results" not in scored[2] and "data root: " in scored[2]


def test_stale_temp_files_are_swept_and_live_ones_kept(scored, tmp_path, capsys):
    names = {"stale": ".smoke__x.json.ab12cd34.tmp", "live": ".smoke__y.json.ef56ab78.tmp",
             "foreign": ".notes.tmp"}

    def plant(out):
        for kind, name in names.items():
            path = out / "scores" / name
            path.write_text("partial")
            if kind != "live":
                os.utime(path, (time.time() - 3600, time.time() - 3600))

    out, _ = rerun(scored, tmp_path, capsys, plant)
    assert sorted(p.name for p in (out / "scores").glob(".*")) == sorted([names["live"], names["foreign"]])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    from encoders.cache import ArrayCache, atomic_write_bytes

    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "r.json", b"{}")
        entry = ArrayCache(tmp_path).put({"k": 1}, {"a": np.zeros(3, np.float32)}, {})
    finally:
        os.umask(previous)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == mode
    assert entry.stat().st_mode & 0o777 == mode
