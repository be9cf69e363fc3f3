"""Score EmbeddingSets with registered estimators, timing each one."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from estimators import EmbeddingSet, InvalidInput, MissingNeeds, estimator_class, get_estimator


@dataclass(frozen=True)
class Score:
    key: str          # which EmbeddingSet (an encoder id or a file name)
    estimator: str
    score: float
    seconds: float


@dataclass(frozen=True)
class Skipped:
    key: str
    estimator: str
    reason: str


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


def score_all(embs: dict[str, EmbeddingSet], names: list[str], random_state: int = 0,
              ) -> tuple[list[Score], list[Skipped]]:
    """Every estimator on every EmbeddingSet (pool-relative ones once over the pool).

    Estimators whose declared inputs are missing, or pool-relative ones given fewer than
    two sets, are returned as skipped with the reason; any other bad input raises."""
    for emb in embs.values():
        check_class_sizes(emb, names)
    scores, skipped = [], []
    for name in names:
        estimator = get_estimator(name, random_state=random_state)
        if estimator.pool_relative:
            groups = [embs] if len(embs) >= 2 else []
            if not groups:
                skipped += [Skipped(k, name, "pool-relative: needs the embeddings of at least 2 encoders")
                            for k in embs]
        else:
            groups = [{k: e} for k, e in embs.items()]
        for group in groups:
            try:
                start = time.perf_counter()
                values = estimator.score_pool(group)
                seconds = (time.perf_counter() - start) / len(group)
            except MissingNeeds as exc:
                skipped += [Skipped(k, name, str(exc)) for k in group]
                continue
            except InvalidInput as exc:
                raise InvalidInput(f"{name}: {exc}") from None
            scores += [Score(k, name, v, seconds) for k, v in values.items()]
    return scores, skipped
