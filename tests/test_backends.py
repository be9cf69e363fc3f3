"""Scale-out: the same cells through joblib and through a local Dask cluster, in cell order."""
import pytest

from benchmark.backends import run_cells
from estimators import InvalidInput


def square(x):
    return x * x


@pytest.mark.parametrize("backend, n_jobs", [("sequential", 1), ("threading", 2), ("loky", 2)])
def test_joblib_backends_keep_cell_order(backend, n_jobs):
    assert run_cells(square, list(range(7)), n_jobs=n_jobs, backend=backend) == [x * x for x in range(7)]


def test_local_dask_cluster_in_process():
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster:
        assert run_cells(square, list(range(9)), backend="dask", scheduler=cluster.scheduler_address) == \
            [x * x for x in range(9)]


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(InvalidInput, match="unknown backend 'spark'"):
        run_cells(square, [1], backend="spark")
