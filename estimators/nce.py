"""Negative Conditional Entropy with the source classifier's predictions as source labels.

Tran, Nguyen, Hassner, "Transferability and Hardness of Supervised Classification
Tasks", ICCV 2019, arXiv 1908.08142.

With hard source labels z_i and target labels y_i:

    P(y, z) = 1/N #{i : y_i = y, z_i = z}
    NCE     = -H(Y | Z) = sum_{y,z} P(y, z) log P(y, z) / P(z)          (<= 0; 0 is perfect)

Source labels here (``EmbeddingSet.source_labels``):

* an image-only encoder with a source classifier (a timm ImageNet model): the argmax of its own
  ImageNet head, z_i = argmax_k source_logits_ik over the 1000 source classes, as in the paper
  (the source task's labels predicted by the source model);
* a dual encoder: the argmax of its zero-shot classifier over the task's class prompts,
  z_i = argmax_c <x_i, t_c> (DESIGN.md); the argmax does not depend on logit_scale or
  logit_bias, so only the text embeddings are needed.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator


def nce(source_labels: np.ndarray, target_labels: np.ndarray) -> float:
    """-H(Y|Z) from two (N,) integer label vectors."""
    _, z = np.unique(source_labels, return_inverse=True)
    _, y = np.unique(target_labels, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    marginal_z = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / marginal_z)[nz])))


@register_estimator("nce")
class NCE(Estimator):
    __doc__ = __doc__
    needs = ("source_labels",)
    description = "negative conditional entropy of labels given the source (ImageNet head or zero-shot) predictions"
    citation = "Tran et al., ICCV 2019, arXiv:1908.08142"

    def compute(self, emb):
        return nce(emb.source_labels(), emb.labels)
