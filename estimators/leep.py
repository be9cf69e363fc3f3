"""LEEP with the encoder's source classifier (ImageNet head or zero-shot classifier) as the source model.

Nguyen, Hassner, Seeger, Archambeau, "LEEP: A New Measure to Evaluate Transferability
of Learned Representations", ICML 2020, arXiv 2002.12462.

With source-label probabilities theta(x_i) over Z source classes:

    P(y, z)  = 1/N sum_i theta_z(x_i) 1[y_i = y]
    P(y | z) = P(y, z) / sum_y' P(y', z)
    LEEP     = 1/N sum_i log sum_z P(y_i | z) theta_z(x_i)          (<= 0; 0 is perfect)

Source model here:

* an image-only encoder with a source classifier (a timm ImageNet model): its own head, theta =
  softmax(source_logits) over its Z = 1000 ImageNet classes, exactly as in the paper (the
  pre-trained source model's label distribution, then the empirical joint with the target labels);
* a dual encoder (no ImageNet head): its own zero-shot classifier over the task's class prompts,
  theta = softmax(logit_scale * image @ text.T (+ logit_bias)), Z = C, as DESIGN.md fixes. LEEP
  then measures how well the zero-shot posteriors, recalibrated by the empirical joint, explain
  the true labels.

``EmbeddingSet.source_probs`` picks the first where ``source_logits`` are present.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .errors import InvalidInput

_TINY = 1e-300


def leep_from_probs(probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP from (N, Z) source probabilities (rows sum to 1) and (N,) target labels."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(labels):
        raise InvalidInput(f"probabilities must have shape (N={len(labels)}, Z); got {probs.shape}")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
        raise InvalidInput("source probabilities must be non-negative rows summing to 1")
    _, y = np.unique(labels, return_inverse=True)
    joint = np.zeros((y.max() + 1, probs.shape[1]))
    np.add.at(joint, y, probs)
    joint /= len(y)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), _TINY)
    eep = np.einsum("iz,iz->i", probs, conditional[y])
    return float(np.mean(np.log(np.maximum(eep, _TINY))))


@register_estimator("leep")
class LEEP(Estimator):
    __doc__ = __doc__
    needs = ("source",)
    description = "log expected empirical prediction of the source (ImageNet head or zero-shot) classifier"
    citation = "Nguyen et al., ICML 2020, arXiv:2002.12462"

    def compute(self, emb):
        return leep_from_probs(emb.source_probs(), emb.labels)
