"""What fine-tuning methods act on: the trainable view of an encoder and the modules they add.

``TunedEncoder`` is an encoder's backbone ``model`` plus an image and a text head on its
L2-normalised embeddings (identity unless a method adds one); its parameters with
``requires_grad`` are exactly the ones a method trains. Towers by parameter name: the image
tower is the backbone's ``visual`` module (open_clip and ConSE convention) plus the image head
and the linear ``classifier``; every other backbone parameter is text. The methods themselves
are in ``benchmark.finetune.methods``.

A ``classifier`` (``LinearHead``) replaces the class-prompt logits on its task: the ``linear``
method, and every method on an image-only encoder (no text tower, so no prompt logits), put a
new linear head ``logits = W f + b`` on the L2-normalised image embedding ``f`` (after the image
head), zero-initialised: it predicts uniformly at step 0 and, unlike a random head, leaves the
first updates of a trained backbone to the labels alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from estimators.errors import InvalidInput

TOWERS = ("image", "text")
TEMPERATURE = ("logit_scale", "logit_bias")  # held at the encoder's values by every method
POOLING = ("attn_pool",)  # attention pooling heads: not transformer blocks
SEPARATE_QKV = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "query": "q", "key": "k", "value": "v"}


# -- the trainable view of an encoder -----------------------------------------------------
class TunedEncoder(nn.Module):
    """An encoder's backbone with an image and a text head on its L2-normalised embeddings, and
    optionally a linear ``classifier`` for the classes of task ``classifier_task``."""

    def __init__(self, model: nn.Module, image_head: nn.Module | None = None,
                 text_head: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.image_head = image_head or nn.Identity()
        self.text_head = text_head or nn.Identity()
        self.classifier: nn.Module | None = None
        self.classifier_task: str | None = None

    def add_classifier(self, dim: int, task) -> None:
        """A zero-initialised ``LinearHead(dim, task.n_classes)`` for ``task``, on the parameters' device."""
        device = next(self.model.parameters()).device
        self.classifier = LinearHead(dim, len(task.classnames)).to(device)
        self.classifier_task = task.id

    def classifies(self, task) -> bool:
        """Whether the linear classifier (not class prompts) gives the logits of ``task``."""
        return self.classifier is not None and self.classifier_task == task.id

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings through backbone and head (the name ``encoders.extract`` calls)."""
        return self.image_head(F.normalize(self.model.encode_image(pixels).float(), dim=-1))

    def encode_prompts(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised backbone text embeddings of prompts (the text head acts on class embeddings)."""
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def tower_of(name: str) -> str | None:
    """``image``, ``text`` or None (the temperature) for a ``TunedEncoder`` parameter name."""
    if name.startswith(("model.visual.", "image_head.", "classifier.")):
        return "image"
    if name in {f"model.{t}" for t in TEMPERATURE}:
        return None
    return "text"


def trainable(tuned: nn.Module) -> dict[str, nn.Parameter]:
    """Name -> parameter for every parameter that trains."""
    return {n: p for n, p in tuned.named_parameters() if p.requires_grad}


def trainable_counts(tuned: nn.Module) -> dict[str, int]:
    """Number of trained scalars per tower, e.g. ``{"image": 0, "text": 110592}``."""
    counts = dict.fromkeys(TOWERS, 0)
    for name, p in trainable(tuned).items():
        tower = tower_of(name)
        if tower:
            counts[tower] += p.numel()
    return counts


def backbone_trains(tuned: TunedEncoder, tower: str) -> bool:
    """Whether any backbone parameter of ``tower`` trains (else its embeddings can be cached)."""
    return any(n.startswith("model.") and tower_of(n) == tower for n in trainable(tuned))


# -- modules the methods add --------------------------------------------------------------
class LinearHead(nn.Linear):
    """``nn.Linear(dim, n_classes)`` with zero weight and bias (uniform predictions at step 0)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__(dim, n_classes)
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()


class ResidualAdapter(nn.Module):
    """CLIP-Adapter head: ``normalise(ratio * fc(f) + (1 - ratio) * f)`` (Gao et al. 2021)."""

    def __init__(self, dim: int, reduction: int = 4, ratio: float = 0.2):
        super().__init__()
        if dim // reduction < 1:
            raise InvalidInput(f"adapter reduction {reduction} leaves no hidden unit for {dim}-d embeddings")
        self.ratio = ratio
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ratio * self.fc(f) + (1 - self.ratio) * f, dim=-1)


class LoRAUpdate(nn.Module):
    """Parametrisation ``W -> W + scale * B_r A_r`` on row blocks ``r`` of ``W`` (q and/or v).

    Rows outside the blocks (a fused K) pass through untouched; ``B = 0`` at init, so the
    weight is exactly ``W`` until the first update (IIMM ``LoraMultiheadAttention``)."""

    def __init__(self, weight: torch.Tensor, rows: dict[str, slice], rank: int, scale: float):
        super().__init__()
        self.rows = dict(sorted(rows.items(), key=lambda kv: kv[1].start))
        self.scale = scale
        self.A = nn.ParameterDict({r: nn.Parameter(torch.randn(rank, weight.shape[1], device=weight.device) * 0.02)
                                   for r in self.rows})
        self.B = nn.ParameterDict({r: nn.Parameter(torch.zeros(s.stop - s.start, rank, device=weight.device))
                                   for r, s in self.rows.items()})

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        parts, at = [], 0
        for role, rows in self.rows.items():
            parts += [weight[at:rows.start], weight[rows] + self.scale * (self.B[role] @ self.A[role])]
            at = rows.stop
        return torch.cat(parts + [weight[at:]])


@dataclass(frozen=True)
class Projection:
    """One attention weight tensor holding query/key/value rows: ``getattr(module, param)``."""

    name: str
    module: nn.Module
    param: str
    rows: dict[str, slice]


def attention_projections(model: nn.Module) -> list[Projection]:
    """The Q/K/V projection weights of every transformer-block attention layer of ``model``."""
    found = []
    for name, module in model.named_modules():
        if set(name.split(".")) & set(POOLING):
            continue
        if isinstance(module, nn.MultiheadAttention):
            found += _mha_projections(name, module)
        elif isinstance(getattr(module, "qkv", None), nn.Linear):
            d = module.qkv.out_features // 3
            found.append(Projection(f"{name}.qkv", module.qkv, "weight", _thirds(d)))
        else:
            for attr, role in SEPARATE_QKV.items():
                child = getattr(module, attr, None)
                if isinstance(child, nn.Linear):
                    found.append(Projection(f"{name}.{attr}", child, "weight",
                                            {role: slice(0, child.out_features)}))
    return found


def _mha_projections(name: str, mha: nn.MultiheadAttention) -> list[Projection]:
    if mha._qkv_same_embed_dim:
        return [Projection(name, mha, "in_proj_weight", _thirds(mha.embed_dim))]
    return [Projection(name, mha, f"{r}_proj_weight", {r: slice(0, mha.embed_dim)}) for r in "qkv"]


def _thirds(d: int) -> dict[str, slice]:
    return {"q": slice(0, d), "k": slice(d, 2 * d), "v": slice(2 * d, 3 * d)}


def embedding_dim(encoder) -> int:
    """Width of the encoder's joint embedding space (one prompt through the text tower); an
    image-only encoder's model states it (``embed_dim``)."""
    if not getattr(encoder, "has_text", True):
        return int(encoder.model.embed_dim)
    device = next(encoder.model.parameters()).device
    with torch.no_grad():
        return int(encoder.model.encode_text(encoder.tokenize(["a photo."]).to(device)).shape[-1])
