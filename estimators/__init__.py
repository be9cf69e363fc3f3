"""Transferability estimators: a registry of numpy-only scorers of EmbeddingSets.

Every module in this package registers its estimators when it is imported (timm style), so a
new built-in estimator is one new file; the registry imports them on first use, so importing
the kernel (errors, registry, ``EmbeddingSet``) loads no scorer, scipy or scikit-learn.
Third-party estimators arrive through the entry-point group ``transferbench.estimators`` or
``--plugins``.
"""
from .base import (
    ESTIMATORS,
    Estimator,
    MissingNeeds,
    baselines,
    estimator_class,
    estimator_info,
    get_estimator,
    list_estimators,
    register_estimator,
)
from .embedding_set import EmbeddingSet, l2_normalise
from .errors import InvalidInput
from .registry import UnknownName, import_plugin

__all__ = ["ESTIMATORS", "baselines", "EmbeddingSet", "Estimator", "InvalidInput", "MissingNeeds", "UnknownName",
           "estimator_class", "estimator_info", "get_estimator", "import_plugin", "l2_normalise",
           "list_estimators", "register_estimator"]
