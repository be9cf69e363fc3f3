"""Rank statistics of model selection for one task: weighted tau, permutation p-values, rel@1, regret@1.

Every function takes the scores already *oriented* (multiplied by -1 for a lower-is-better
estimator), so "higher score = the model predicted to fine-tune better".

- Weighted tau is ``scipy.stats.weightedtau`` with its defaults (Vigna, WWW 2015; the LogME / SFDA
  convention): hyperbolic weigher ``1 / (r + 1)``, additive pair weights ``w_i + w_j``, ranks
  ``r`` the decreasing lexicographic order by (x, y), averaged with the one by (y, x);
  ``tau = sum_{i<j} W_ij sgn(dx) sgn(dy) / sqrt(sum W_ij [dx != 0] * sum W_ij [dy != 0])``, so tied
  scores or tied accuracies count as ties. ``weighted_tau`` evaluates this formula on a batch of
  score vectors at once; it is checked against scipy (with ties) in the tests.
- ``permutation_p``: the one-sided p-value of "the score orders the models no better than chance",
  ``P(tau(pi(x), y) >= tau(x, y))`` over the n! orderings ``pi`` of the scores: enumerated exactly
  up to ``EXACT_MAX`` models, else estimated from seeded random orderings as
  ``(1 + #{tau* >= tau}) / (B + 1)`` with its Monte-Carlo standard error ``sqrt(p (1 - p) / B)``.
- ``null_band``: the chance that a random score (distinct values in random order) reaches a given
  weighted tau against these accuracies, by the same enumeration.
"""
from __future__ import annotations

import functools
import itertools
import math
import zlib

import numpy as np

EXACT_MAX = 8
MC_DRAWS = 9999
_EPS = 1e-12  # a permuted tau equal to the observed one up to rounding counts as "at least as large"
_CHUNK = 20000


def _lex_ranks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of (P, n): each element's position in the decreasing lexicographic order by (a, b),
    equal pairs in index order (``np.lexsort((-b, -a))``, stable, as scipy)."""
    n = a.shape[1]
    above = (a[:, None, :] > a[:, :, None]) | ((a[:, None, :] == a[:, :, None]) & (b[:, None, :] > b[:, :, None]))
    equal_before = (a[:, None, :] == a[:, :, None]) & (b[:, None, :] == b[:, :, None]) & np.tri(n, k=-1, dtype=bool)
    return above.sum(axis=2) + equal_before.sum(axis=2)


def weighted_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """``scipy.stats.weightedtau(x, y)`` (defaults) of each row of ``x`` (P, n) or of one vector
    against ``y`` (n,); NaN where x or y is constant."""
    single = np.ndim(x) == 1
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    yy = np.broadcast_to(y, x.shape)
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, None] - y[None, :])
    upper = np.triu(np.ones(sy.shape, dtype=bool), k=1)
    taus = []
    for a, b in ((x, yy), (yy, x)):
        w = 1.0 / (_lex_ranks(a, b) + 1.0)
        pair = (w[:, :, None] + w[:, None, :]) * upper
        num = (pair * sx * sy).sum(axis=(1, 2))
        den = np.sqrt((pair * np.abs(sx)).sum(axis=(1, 2)) * (pair * np.abs(sy)).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            taus.append(num / den)
    tau = (taus[0] + taus[1]) / 2
    return float(tau[0]) if single else tau


def _orderings(values: np.ndarray, draws: int, seed_text: str):
    """Every ordering of ``values`` (n <= EXACT_MAX) or ``draws`` seeded random ones, in chunks."""
    n = len(values)
    if n <= EXACT_MAX:
        perms = np.array(list(itertools.permutations(range(n))))
        for start in range(0, len(perms), _CHUNK):
            yield values[perms[start:start + _CHUNK]]
        return
    rng = np.random.default_rng([n, zlib.crc32(seed_text.encode())])
    for start in range(0, draws, _CHUNK):
        k = min(_CHUNK, draws - start)
        yield values[rng.permuted(np.broadcast_to(np.arange(n), (k, n)), axis=1)]


@functools.lru_cache(maxsize=4096)
def _null(x_pattern: tuple, y: tuple, draws: int) -> np.ndarray:
    """Weighted tau of every ordering (or ``draws`` random ones) of the values ``x_pattern`` against ``y``."""
    x, yv = np.asarray(x_pattern, dtype=float), np.asarray(y, dtype=float)
    return np.concatenate([weighted_tau(chunk, yv) for chunk in _orderings(x, draws, repr((x_pattern, y)))])


def _pattern(x: np.ndarray) -> tuple:
    """Weighted tau depends on the scores only through their order: dense ranks, sorted."""
    return tuple(sorted(np.unique(x, return_inverse=True)[1].tolist()))


def permutation_p(x: np.ndarray, y: np.ndarray, draws: int = MC_DRAWS) -> tuple[float, bool, float]:
    """(p, exact, standard error): one-sided permutation p-value of ``weighted_tau(x, y)``; exact over
    all n! orderings up to ``EXACT_MAX`` models (standard error 0), else Monte Carlo with ``draws``
    seeded orderings. NaN when x or y is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    observed = weighted_tau(x, y)
    if not np.isfinite(observed):
        return math.nan, len(x) <= EXACT_MAX, math.nan
    null = _null(_pattern(x), tuple(y.tolist()), draws)
    hits = int((null >= observed - _EPS).sum())
    if len(x) <= EXACT_MAX:
        return hits / len(null), True, 0.0
    p = (hits + 1) / (len(null) + 1)
    return p, False, math.sqrt(p * (1 - p) / len(null))


def null_band(y: np.ndarray, threshold: float = 0.5, draws: int = MC_DRAWS) -> float:
    """The chance that a random score (n distinct values in random order) reaches weighted tau
    >= ``threshold`` against the accuracies ``y`` (exact up to ``EXACT_MAX`` models)."""
    y = np.asarray(y, dtype=float)
    null = _null(tuple(range(len(y))), tuple(y.tolist()), draws)
    return float((null >= threshold - _EPS).mean())


def top1(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(rel@1, regret@1): the accuracy of the top-scored model over the best accuracy, and the best
    accuracy minus it. Tied top scores: the mean accuracy of the tied models (the expected value of
    picking one at random)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    chosen = y[x == x.max()].mean()
    best = y.max()
    return (chosen / best if best != 0 else math.nan), best - chosen
