"""Fan grid cells out over an existing engine: joblib (loky processes by default) or Dask.

Every cell writes its own result file, so workers return only small summaries and a
crash or Ctrl-C loses at most the cells in flight. Loky workers watch the main
process and exit within a second of its death (SIGTERM, SIGKILL), so a killed run
leaves no worker holding memory. ``--backend dask --scheduler ADDRESS`` sends the same
cells to a running Dask distributed cluster (the ``dask`` extra); without an address a
local cluster is started in-process. A Dask run that has no worker for
``TRANSFERBENCH_DASK_WAIT`` seconds (default 300) stops with a line saying so.

A loky worker keeps what its cells share (the encoder, the ConSE text bank, tar indexes),
and training leaves its allocator a few hundred MB larger than after its first cell. Loky
reads any growth over 300 MB as a leak and replaces the worker, which then imports torch and
rebuilds the encoder again (every 40-85 s in a ``mini`` run); ``WORKER_GROWTH`` raises that
allowance, so a worker still restarts if it really leaks.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from typing import Callable, Sequence

from estimators import InvalidInput

BACKENDS = ("loky", "threading", "sequential", "dask")
POLL_S = 0.5
WORKER_GROWTH = 1.5e9  # bytes a loky worker may grow past its size after its first cell


def run_cells(fn: Callable, cells: Sequence, n_jobs: int = 1, backend: str = "loky", scheduler: str | None = None,
              desc: str = "cells", worker_wait: float | None = None) -> list:
    """``[fn(cell) for cell in cells]`` on the chosen backend, in cell order, with a progress bar."""
    from tqdm.auto import tqdm

    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not cells:
        return []
    if backend == "dask":
        wait = float(os.environ.get("TRANSFERBENCH_DASK_WAIT", 300)) if worker_wait is None else worker_wait
        return _run_dask(fn, cells, n_jobs, scheduler, desc, wait)
    n_jobs = min(n_jobs, len(cells))   # no idle worker: each one starts watching its parent with its first cell
    if backend == "sequential" or n_jobs == 1:
        with tqdm((fn(cell) for cell in cells), total=len(cells), desc=desc, unit="cell") as bar:
            return list(bar)
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    if backend == "loky":
        fn = functools.partial(_in_worker, os.getpid(), fn)
    done: list = []
    for attempt in (1, 2):  # a worker killed by the system (out of memory): its cells once more, fresh workers
        rest = cells[len(done):]
        results = Parallel(n_jobs=min(n_jobs, len(rest)), backend=backend, return_as="generator")(
            delayed(fn)(c) for c in rest)
        try:
            with tqdm(results, total=len(cells), initial=len(done), desc=desc, unit="cell") as bar:
                for result in bar:   # the bar is closed before an error is printed
                    done.append(result)
            return done
        except TerminatedWorkerError:
            if attempt == 2:
                raise WorkerLost(f"a worker process was killed twice while running {desc} (most likely out of "
                                 f"memory): finished cells are kept; rerun the same command with fewer --n-jobs "
                                 f"to resume") from None
            print(f"warning: a worker process was killed while running {desc} (most likely out of memory); "
                  f"retrying its cells in fresh workers", file=sys.stderr, flush=True)


class WorkerLost(InvalidInput):
    """A worker process died twice under the same cells (the system killed it: usually memory)."""


_set_up = threading.Lock()


def _in_worker(parent: int | None, fn: Callable, cell):
    """``fn(cell)`` in a worker process, set up once. tqdm gets a thread lock instead of the
    multiprocessing semaphore it would otherwise create, which a worker stopped by Ctrl-C or
    SIGTERM cannot release ("leaked semaphore"). A loky worker (``parent`` given) leaves
    Ctrl-C to the main process, which stops the workers, and exits as soon as ``parent`` is
    gone, so a killed run leaves no worker computing or holding memory."""
    if _set_up.acquire(blocking=False):
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
        if parent is not None and os.getpid() != parent:
            from joblib.externals.loky import process_executor

            process_executor._MAX_MEMORY_LEAK_SIZE = int(WORKER_GROWTH)  # loky's leak check (private)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="transferbench-parent-watch").start()
    return fn(cell)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:   # an orphan is re-parented (to init or a subreaper)
        time.sleep(POLL_S)
    os._exit(1)


def _run_dask(fn: Callable, cells: Sequence, n_jobs: int, scheduler: str | None, desc: str,
              worker_wait: float) -> list:
    try:
        from distributed import Client, KilledWorker, LocalCluster, wait
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
    where = scheduler or "the local cluster"
    try:
        futures = client.map(functools.partial(_in_worker, None, fn), list(cells), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        pending, had_workers, since = set(futures), False, time.monotonic()
        del futures   # only ``pending`` holds futures: a fetched result is released, never recomputed
        with tqdm(total=len(index), desc=desc, unit="cell") as bar:
            while pending:
                try:
                    done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                for future in done:
                    try:
                        results[index[future.key]] = future.result()
                    except KilledWorker as exc:
                        raise InvalidInput(f"a cell killed every Dask worker that ran it ({exc}); out of memory? "
                                           f"{bar.n} of {len(index)} cells finished and are kept") from None
                    bar.update()
                if client.nthreads():
                    had_workers, since = True, time.monotonic()
                elif time.monotonic() - since > worker_wait:
                    what = "every Dask worker was lost" if had_workers else "no Dask worker connected"
                    raise InvalidInput(f"{what} ({where}, none for {worker_wait:g} s): {bar.n} of {len(index)} "
                                       f"cells finished and are kept; start workers and rerun to resume")
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
