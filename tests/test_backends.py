"""Scale-out: the same cells through joblib and through a local Dask cluster, in cell order."""
import os
import time

import numpy as np
import pytest

from benchmark.store.backends import run_cells
from estimators import InvalidInput


def square(x):
    return x * x


@pytest.mark.parametrize("backend, n_jobs", [("sequential", 1), ("threading", 2), ("loky", 2)])
def test_joblib_backends_keep_cell_order(backend, n_jobs):
    assert run_cells(square, list(range(7)), n_jobs=n_jobs, backend=backend) == [x * x for x in range(7)]


_KEPT = []


def cache_320mb(_):
    """A cell that leaves its worker 320 MB larger, as a worker's caches do, after over a second
    (loky checks a worker's memory at most once a second)."""
    _KEPT.append(np.ones(40_000_000))
    time.sleep(1.1)
    return os.getpid()


@pytest.mark.e2e
def test_a_loky_worker_that_grows_by_its_caches_is_not_replaced():
    pids = run_cells(cache_320mb, list(range(6)), n_jobs=2, backend="loky")
    assert len(set(pids)) == 2  # loky's default (300 MB) would start a third worker after the second cell


def test_local_dask_cluster_in_process():
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster:
        assert run_cells(square, list(range(9)), backend="dask", scheduler=cluster.scheduler_address) == \
            [x * x for x in range(9)]


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(InvalidInput, match="unknown backend 'spark'"):
        run_cells(square, [1], backend="spark")


def die_once(marker, cell):
    """Kills its own worker process the first time any worker reaches cell 3 (as the OOM killer would)."""
    import signal

    if cell == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return cell * cell


def die_always(cell):
    import signal

    if cell == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return cell


@pytest.mark.e2e
def test_a_killed_loky_worker_is_retried_once_then_one_line(tmp_path, capsys):
    """Issue 21: a loky worker killed by the system gave a 48-line TerminatedWorkerError."""
    import functools

    from benchmark.store.backends import WorkerLost

    marker = str(tmp_path / "died")
    assert run_cells(functools.partial(die_once, marker), list(range(6)), n_jobs=2) == [x * x for x in range(6)]
    assert "retrying its cells in fresh workers" in capsys.readouterr().err
    with pytest.raises(WorkerLost, match=r"killed twice .* \(most likely out of memory\)"):
        run_cells(die_always, list(range(6)), n_jobs=2)
