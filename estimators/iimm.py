"""Inter-Intra Modal Measure (IIMM) and its parts, plus the modality gap.

Niss, Vogt-Lowell, Tsiligkaridis, "The Inter-Intra Modal Measure: A Predictive Lens
on Fine-Tuning Outcomes in Vision-Language Models", ICCV 2025, arXiv 2407.15731
(reference code: github.com/mit-ll/IIMM, ``metrics.py``).

On L2-normalised image embeddings x_i (N of them, label y_i) and class-prompt
embeddings t_c (C of them):

    S_inter = 1/N sum_i 1/(C-1) sum_{c != y_i} <x_i, t_c>       (wrong-prompt similarity)
    S_intra = 2/(N(N-1)) sum_{i<j} <x_i, x_j>                    (image-image similarity)
    IIMM    = (S_inter + S_intra) / 2                             in [-1, 1]

Both terms are computed exactly in O(N*D): sum_{i<j} <x_i, x_j> = (||sum_i x_i||^2 - N)/2
for unit vectors, and sum_{c != y_i} <x_i, t_c> = <x_i, sum_c t_c> - <x_i, t_{y_i}>.
The reference computes S_intra with O(N^2 D) blocked matmuls. Higher IIMM predicts
a larger in-domain gain and more forgetting.
"""
from __future__ import annotations

import numpy as np

from .base import Estimator, register_estimator
from .common import as_float64

CITATION = "Niss et al., ICCV 2025, arXiv:2407.15731"


def iimm_intra(image: np.ndarray) -> float:
    """Mean cosine over all N(N-1)/2 distinct pairs of (unit-norm) image rows."""
    x = as_float64(image)
    n = x.shape[0]
    total = x.sum(axis=0)
    return float((total @ total - np.einsum("ij,ij->", x, x)) / (n * (n - 1)))


def iimm_inter(image: np.ndarray, labels: np.ndarray, text: np.ndarray) -> float:
    """Mean over images of the mean cosine to the C-1 wrong class prompts."""
    x, t = as_float64(image), as_float64(text)
    to_all = x @ t.sum(axis=0)
    to_own = np.einsum("ij,ij->i", x, t[labels])
    return float(np.mean((to_all - to_own) / (t.shape[0] - 1)))


def iimm(image: np.ndarray, labels: np.ndarray, text: np.ndarray) -> float:
    return 0.5 * (iimm_inter(image, labels, text) + iimm_intra(image))


def modality_gap(image: np.ndarray, text: np.ndarray) -> float:
    """||mean(image) - mean(text)||_2 (Liang et al., NeurIPS 2022, "Mind the Gap")."""
    return float(np.linalg.norm(as_float64(image).mean(axis=0) - as_float64(text).mean(axis=0)))


@register_estimator("iimm")
class IIMM(Estimator):
    __doc__ = __doc__
    needs = ("text",)
    measures_separability = False
    description = "Inter-Intra Modal Measure: (S_inter + S_intra) / 2"
    citation = CITATION

    def compute(self, emb):
        return iimm(emb.image, emb.labels, emb.text)


@register_estimator("iimm_inter")
class IIMMInter(Estimator):
    """IIMM's inter-modal term on its own (Niss et al., ICCV 2025, arXiv 2407.15731):

        S_inter = 1/N sum_i 1/(C-1) sum_{c != y_i} <x_i, t_c>

    how similar the images are to the prompts of the classes they do not belong to."""
    needs = ("text",)
    measures_separability = False
    description = "IIMM inter-modal term: mean cosine of images to wrong class prompts"
    citation = CITATION

    def compute(self, emb):
        return iimm_inter(emb.image, emb.labels, emb.text)


@register_estimator("iimm_intra")
class IIMMIntra(Estimator):
    """IIMM's intra-modal term on its own (Niss et al., ICCV 2025, arXiv 2407.15731):

        S_intra = 2/(N(N-1)) sum_{i<j} <x_i, x_j> = (||sum_i x_i||^2 - N) / (N(N-1))

    how tightly the task's images cluster in the embedding space; needs no text."""
    measures_separability = False
    description = "IIMM intra-modal term: mean pairwise cosine between images"
    citation = CITATION

    def compute(self, emb):
        return iimm_intra(emb.image)


@register_estimator("modality_gap")
class ModalityGap(Estimator):
    """Modality gap ||mean_i x_i - mean_c t_c||_2 between image and class-prompt embeddings.

    Liang, Zhang, Kwon, Yeung, Zou, "Mind the Gap: Understanding the Modality Gap in
    Multi-modal Contrastive Representation Learning", NeurIPS 2022. A baseline: the IIMM
    paper reports it as a weaker predictor. Declared higher_is_better=False (a smaller gap
    means better aligned modalities); the evaluator reads the direction from here.
    """
    needs = ("text",)
    measures_separability = False
    baseline = True
    higher_is_better = False
    description = "norm of mean image minus mean class-prompt embedding"
    citation = "Liang et al., NeurIPS 2022, arXiv:2203.02053"

    def compute(self, emb):
        return modality_gap(emb.image, emb.text)
