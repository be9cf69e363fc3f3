"""A seeded random score: the floor that any estimator's predictiveness must clear.

score = U(0, 1) drawn from a generator seeded by (random_state, sha256 of the
EmbeddingSet's identity). The identity is the encoder id, task id and split from
``meta`` when present, else the array shapes, so the score is reproducible, the same
for any order of the samples or naming of the classes, and independent across the
cells of a benchmark grid. Baselines of this kind are recommended by Agostinelli et
al., ECCV 2022 (arXiv 2204.01403) and Singh et al., arXiv 2510.06448.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .base import Estimator, register_estimator


@register_estimator("random")
class RandomBaseline(Estimator):
    __doc__ = __doc__
    baseline = True
    measures_separability = False
    description = "seeded uniform random score (chance-level predictor)"
    citation = "Agostinelli et al., ECCV 2022, arXiv:2204.01403"

    def compute(self, emb):
        identity = {k: emb.meta.get(k) for k in ("encoder", "task", "split")}
        if not any(identity.values()):
            identity = {"n": emb.n, "dim": emb.dim, "n_classes": emb.n_classes}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).digest()
        seed = [int(self.random_state), int.from_bytes(digest[:8], "little")]
        return float(np.random.default_rng(seed).uniform())
