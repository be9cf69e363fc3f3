"""The Estimator contract and the estimator registry.

An estimator maps the zero-shot embeddings of one encoder on one task to a float
that should predict what fine-tuning will do. Subclasses set the metadata class
attributes and implement ``compute(emb) -> float``; ``score`` wraps it with the
checks every estimator needs (declared inputs present, enough samples per class,
a finite result, enough memory for the declared ``memory_bytes``). ``__init__`` stores
parameters only (scikit-learn habit) and randomness comes from ``random_state``.

Pool-relative estimators (NCTI, ETran) are only defined across a pool of
encoders on the same task: they set ``pool_relative = True`` and implement
``compute_pool({encoder_id: EmbeddingSet}) -> {encoder_id: float}``.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import ClassVar

import numpy as np

from .embedding_set import EmbeddingSet
from .errors import InvalidInput
from .registry import Registry

ESTIMATORS = Registry("estimator", entry_point_group="transferbench.estimators", package="estimators",
                      infrastructure=("base", "checks", "common", "embedding_set", "errors", "registry"))
register_estimator = ESTIMATORS.register

NEEDS = {
    "text": "text features (one class-prompt embedding per class)",
    "logits": "text features and the encoder's logit_scale (zero-shot probabilities)",
    "source": "a source classifier: the encoder's own source logits (an image-only model's ImageNet head) "
              "or text features and the encoder's logit_scale (the zero-shot classifier's probabilities)",
    "source_labels": "a source classifier: the encoder's own source logits (an image-only model's ImageNet "
                     "head) or text features (the zero-shot classifier's predictions)",
}


def _has(emb: EmbeddingSet, need: str) -> bool:
    """Whether ``emb`` holds what ``need`` (a key of ``NEEDS``) asks for."""
    zero_shot = emb.text is not None and (need in ("text", "source_labels") or emb.logit_scale is not None)
    return zero_shot or (need in ("source", "source_labels") and emb.source_logits is not None)


class MissingNeeds(InvalidInput):
    """The EmbeddingSet lacks an input the estimator declares in ``needs``."""


class Estimator:
    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    min_per_class: ClassVar[int] = 1
    pool_relative: ClassVar[bool] = False
    #: True when the score measures how well the features separate the classes, so that
    #: clearly separable classes must score above noise in the declared direction (the
    #: contract suite checks it). False for gain predictors such as IIMM and for baselines.
    measures_separability: ClassVar[bool] = True
    #: True for a reference point ranked beside the estimators rather than a transferability
    #: estimator (zero-shot accuracy, random, the modality gap, kNN, a linear probe): boards flag it.
    baseline: ClassVar[bool] = False

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def get_params(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract -------------------------------------------------------------
    def compute(self, emb: EmbeddingSet) -> float:
        raise NotImplementedError

    def compute_pool(self, embs: dict[str, EmbeddingSet]) -> dict[str, float]:
        raise NotImplementedError

    def memory_bytes(self, n: int, d: int, c: int) -> int | None:
        """Peak working memory of ``compute`` at N samples, D dimensions and C classes, for
        estimators whose arrays grow faster than the input (e.g. D x D); None: not checked."""
        return None

    # -- checked entry points -----------------------------------------------------
    def check(self, emb: EmbeddingSet) -> None:
        """Raise InvalidInput (MissingNeeds for absent inputs) if ``emb`` cannot be scored."""
        if not isinstance(emb, EmbeddingSet):
            raise InvalidInput(f"{self.name} scores an EmbeddingSet, got {type(emb).__name__}")
        for need in self.needs:
            if need not in NEEDS:
                raise ValueError(f"{self.name} declares unknown need {need!r}; known: {sorted(NEEDS)}")
            if not _has(emb, need):
                image_only = " (the encoder is image-only: it has no text tower)" if emb.meta.get("image_only") else ""
                raise MissingNeeds(f"{self.name} needs {NEEDS[need]}{image_only}")
        need = self.memory_bytes(emb.n, emb.dim, emb.n_classes)
        if need is not None and (free := available_memory()) is not None and need > free:
            raise InvalidInput(f"{self.name} needs about {need / 2**30:.1f} GiB of memory at N={emb.n}, "
                               f"D={emb.dim}; {free / 2**30:.1f} GiB is available")
        if self.min_per_class > 1:
            counts = np.bincount(emb.labels, minlength=emb.n_classes)
            present = counts[counts > 0]
            if present.min() < self.min_per_class:
                worst = int(np.flatnonzero(counts == present.min())[0])
                raise InvalidInput(f"{self.name} needs at least {self.min_per_class} samples per class; "
                                   f"class {worst} has {int(present.min())}")

    def score(self, emb: EmbeddingSet) -> float:
        if self.pool_relative:
            raise InvalidInput(f"{self.name} is pool-relative: score it across encoders with score_pool()")
        self.check(emb)
        with _quiet_numerics():
            return _finite(self.name, self.compute(emb))

    def score_pool(self, embs: dict[str, EmbeddingSet]) -> dict[str, float]:
        """Scores for several encoders on the same task (per encoder unless pool-relative)."""
        if not self.pool_relative:
            return {k: self.score(e) for k, e in embs.items()}
        if len(embs) < 2:
            raise InvalidInput(f"{self.name} is pool-relative and needs embeddings of at least 2 encoders")
        for e in embs.values():
            self.check(e)
        with _quiet_numerics():
            return {k: _finite(self.name, v) for k, v in self.compute_pool(embs).items()}


@contextlib.contextmanager
def _quiet_numerics():
    """numpy's floating-point RuntimeWarnings stay inside the estimator: a result they spoil is
    non-finite, and ``_finite`` reports that in one line (they used to print across progress bars)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable, capped by a cgroup v2
    memory limit (containers, SLURM); None where neither is known."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                left = int(limit) - int(f.read())
            free = left if free is None else min(free, left)
    except (OSError, ValueError):
        pass
    return free


def _finite(name: str, value) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise InvalidInput(f"{name} produced a non-finite score ({value}); the input is degenerate for it")
    return value


def list_estimators(pattern: str | list[str] = "*") -> list[str]:
    """Registered estimator names matching fnmatch pattern(s), e.g. ``list_estimators('iimm*')``."""
    return ESTIMATORS.names(pattern)


def estimator_class(name: str) -> type[Estimator]:
    return ESTIMATORS.get(name)


def get_estimator(name: str, **params) -> Estimator:
    """An instance of the estimator registered as ``name``; unknown names suggest close matches."""
    return ESTIMATORS.get(name)(**params)


def baselines() -> frozenset[str]:
    """The registered estimators that declare themselves baselines (``Estimator.baseline``)."""
    return frozenset(n for n in list_estimators() if ESTIMATORS.get(n).baseline)


def estimator_info(name: str) -> dict:
    cls = ESTIMATORS.get(name)
    return {"name": name, "higher_is_better": cls.higher_is_better, "needs": list(cls.needs),
            "version": cls.version, "pool_relative": cls.pool_relative,
            "min_per_class": cls.min_per_class, "baseline": cls.baseline, "description": cls.description,
            "citation": cls.citation, "module": cls.__module__}
