"""Fan grid cells out over an existing engine: joblib (loky processes by default) or Dask.

Every cell writes its own result file, so workers return only small summaries and a
crash or Ctrl-C loses at most the cells in flight. ``--backend dask --scheduler
ADDRESS`` sends the same cells to a running Dask distributed cluster (the ``dask``
extra); without an address a local cluster is started in-process.
"""
from __future__ import annotations

from typing import Callable, Sequence

from estimators import InvalidInput

BACKENDS = ("loky", "threading", "sequential", "dask")


def run_cells(fn: Callable, cells: Sequence, n_jobs: int = 1, backend: str = "loky", scheduler: str | None = None,
              desc: str = "cells") -> list:
    """``[fn(cell) for cell in cells]`` on the chosen backend, in cell order, with a progress bar."""
    from tqdm.auto import tqdm

    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not cells:
        return []
    if backend == "sequential" or (n_jobs == 1 and backend != "dask"):
        return [fn(cell) for cell in tqdm(cells, desc=desc, unit="cell")]
    if backend == "dask":
        return _run_dask(fn, cells, n_jobs, scheduler, desc)
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator")
    return list(tqdm(parallel(delayed(fn)(c) for c in cells), total=len(cells), desc=desc, unit="cell"))


def _run_dask(fn: Callable, cells: Sequence, n_jobs: int, scheduler: str | None, desc: str) -> list:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InvalidInput("the dask backend needs the 'dask' extra: pip install 'transferbench[dask]'") from None
    from tqdm.auto import tqdm

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InvalidInput(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        cluster = None
    else:
        cluster = LocalCluster(n_workers=max(1, n_jobs), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(fn, list(cells), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="cell"):
            results[index[future.key]] = future.result()
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
