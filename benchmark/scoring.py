"""Score EmbeddingSets with registered estimators, timing each one.

One estimator's failure never costs the others their scores: whatever it raises
(degenerate input, a NaN result, a bug in a plugin, running past ``time_limit``) is
recorded as a one-line ``Failed`` reason and scoring goes on. An estimator still
running after ``notice_after`` seconds is named in a progress line.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from estimators import EmbeddingSet, InvalidInput, MissingNeeds, estimator_class, get_estimator

NOTICE_AFTER_S = 60.0


@dataclass(frozen=True)
class Score:
    key: str          # which EmbeddingSet (an encoder id or a file name)
    estimator: str
    score: float
    seconds: float


@dataclass(frozen=True)
class NotScored:
    key: str
    estimator: str
    status: str       # "skipped" (its inputs are missing) or "failed" (it raised, gave NaN or timed out)
    reason: str


class EstimatorTimeout(Exception):
    """An estimator ran past the time limit."""


def check_class_sizes(emb: EmbeddingSet, names: list[str]) -> None:
    """One error naming every selected estimator that needs more samples per class than ``emb`` has."""
    counts = np.bincount(emb.labels, minlength=emb.n_classes)
    smallest = int(counts[counts > 0].min())
    too_few = [n for n in names if estimator_class(n).min_per_class > smallest]
    if too_few:
        cls = int(np.flatnonzero(counts == smallest)[0])
        need = max(estimator_class(n).min_per_class for n in too_few)
        raise InvalidInput(f"class {cls} has only {smallest} sample(s); {', '.join(too_few)} need at least "
                           f"{need} per class (add samples or leave them out with --estimators)")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: the message for bad input, ``Type: message`` otherwise."""
    text = str(exc) if isinstance(exc, (InvalidInput, EstimatorTimeout)) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def watched(what: str, time_limit: float | None, notice_after: float, log):
    """Name ``what`` in a progress line once it has run ``notice_after`` seconds, and raise
    EstimatorTimeout in it after ``time_limit`` seconds. The limit needs the main thread
    (sequential and loky cells); in a thread (threading, Dask) only the line is printed."""
    notice = threading.Timer(notice_after, log, [f"still running: {what} after {notice_after:g} s"])
    notice.daemon = True
    notice.start()
    alarm = bool(time_limit) and threading.current_thread() is threading.main_thread() \
        and hasattr(signal, "setitimer")
    if alarm:
        def expire(signum, frame):
            raise EstimatorTimeout(f"stopped after the time limit of {time_limit:g} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        yield
    finally:
        notice.cancel()
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def one_task(embs: dict[str, EmbeddingSet]) -> bool:
    """Whether the EmbeddingSets are of one task sample: the same labels in the same order."""
    first = next(iter(embs.values()))
    return all(e.labels.shape == first.labels.shape and np.array_equal(e.labels, first.labels) for e in embs.values())


def score_all(embs: dict[str, EmbeddingSet], names: list[str], random_state: int = 0, check_sizes: bool = True,
              time_limit: float | None = None, notice_after: float = NOTICE_AFTER_S, log=None,
              ) -> tuple[list[Score], list[NotScored]]:
    """Every estimator on every EmbeddingSet (pool-relative ones once over the pool).

    ``check_sizes`` first rejects, in one error, classes too small for any selected
    estimator. Estimators whose declared inputs are missing, or pool-relative ones given
    fewer than two sets, are skipped with the reason; one that raises, returns a
    non-finite score or exceeds ``time_limit`` seconds is recorded as failed."""
    log = log or partial(print, file=sys.stderr)
    if check_sizes:
        for emb in embs.values():
            check_class_sizes(emb, names)
    scores, missed = [], []
    for name in names:
        estimator = get_estimator(name, random_state=random_state)
        if estimator.pool_relative:
            reason = ("pool-relative: needs the embeddings of at least 2 encoders" if len(embs) < 2 else
                      None if one_task(embs) else
                      "pool-relative: the embeddings are not of one task (their labels differ)")
            groups = [] if reason else [embs]
            missed += [NotScored(k, name, "skipped", reason) for k in embs] if reason else []
        else:
            groups = [{k: e} for k, e in embs.items()]
        for group in groups:
            try:
                start = time.perf_counter()
                with watched(f"estimator {name} on {', '.join(group)}", time_limit, notice_after, log):
                    values = estimator.score_pool(group)
                seconds = (time.perf_counter() - start) / len(group)
            except MissingNeeds as exc:
                missed += [NotScored(k, name, "skipped", str(exc)) for k in group]
                continue
            except (Exception, SystemExit) as exc:  # one estimator's failure must not sink the others
                missed += [NotScored(k, name, "failed", one_line(exc)) for k in group]
                continue
            scores += [Score(k, name, v, seconds) for k, v in values.items()]
    return scores, missed
