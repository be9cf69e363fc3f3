"""Zero-shot accuracy: the baseline every transferability estimator must beat.

Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision" (CLIP), ICML 2021, arXiv 2103.00020:

    acc_zs = 1/N sum_i 1[argmax_c <x_i, t_c> = y_i]

on the task's (training-split) embeddings, the same argmax-over-prompts rule the
benchmark uses to measure accuracy before and after fine-tuning. Critiques of the
field (Chaves et al., TMLR 2024, arXiv 2405.20420) find such raw-performance
baselines often match published estimators, so it is ranked beside them.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator


def zero_shot_accuracy(image: np.ndarray, labels: np.ndarray, text: np.ndarray) -> float:
    logits = np.asarray(image, dtype=np.float64) @ np.asarray(text, dtype=np.float64).T
    return float(np.mean(np.argmax(logits, axis=1) == labels))


@register_estimator("zero_shot_acc")
class ZeroShotAccuracy(Estimator):
    __doc__ = __doc__
    baseline = True
    needs = ("text",)
    description = "top-1 accuracy of the zero-shot class-prompt classifier"
    citation = "Radford et al., ICML 2021, arXiv:2103.00020"

    def compute(self, emb):
        return zero_shot_accuracy(emb.image, emb.labels, emb.text)
