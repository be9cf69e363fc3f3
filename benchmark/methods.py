"""Fine-tuning methods: which parameters of an encoder train, and the modules they add.

A method turns an ``Encoder`` into a ``TunedEncoder`` (its backbone ``model`` plus an image
and a text head on the embeddings, identity unless the method adds one) whose parameters
with ``requires_grad`` are exactly the ones it trains. The five methods of the IIMM paper
(arXiv 2407.15731, code github.com/mit-ll/IIMM ``models/``), all acting on both towers:

* ``full``: every tower parameter. The temperature stays at the encoder's ``logit_scale``
  (and ``logit_bias``), so open_clip's ``logit_scale`` / ``logit_bias`` are never trained.
* ``bitfit``: bias terms only (Ben Zaken et al. 2021, arXiv 2106.10199): every parameter
  named ``*bias`` (LayerNorm/BatchNorm shifts included). IIMM's regex ``resblocks.*bias``
  keeps only transformer-block biases (it leaves out ln_pre/ln_post/ln_final).
* ``attention``: the query/key/value projection weights of transformer-block attention
  (IIMM's ``resblocks.*attn.in.*weight``): open_clip's fused ``attn.in_proj_weight``, timm's
  fused ``attn.qkv.weight`` (SigLIP) or ``attn.{q,k,v}_proj.weight`` (EVA-02), HF BERT's
  ``attention.self.{query,key,value}.weight``. Attention pooling heads (``attn_pool``) are not
  transformer blocks and are left out.
* ``lora``: low-rank updates ``W_q += s * B_q A_q`` and ``W_v += s * B_v A_v`` on the same
  projections (Hu et al. 2021, arXiv 2106.09685; IIMM after word_soups: Q and V only,
  A ~ N(0, 0.02^2), B = 0, fixed scale s = 0.2, rank 4; ``alpha = s * rank`` in the alpha/r
  convention), applied with ``torch.nn.utils.parametrize``, so the model is unchanged at step 0.
* ``clip_adapter``: frozen towers; on each embedding a bottleneck
  ``Linear(D, D/r, no bias) - ReLU - Linear(D/r, D, no bias) - ReLU`` mixed residually,
  ``f = ratio * adapter(f) + (1 - ratio) * f``, then L2-normalised (Gao et al. 2021,
  arXiv 2110.04544; r = 4, ratio = 0.2 as IIMM). Default (Kaiming) init as both sources:
  the final ReLU makes an exactly-neutral init untrainable (its gradient is 0 where its
  output is 0), so unlike LoRA the adapter moves the embeddings at step 0.

Towers by parameter name: the image tower is the backbone's ``visual`` module (open_clip
and ConSE convention) plus the image head; every other backbone parameter is text. A
method with nothing to act on in one tower trains nothing there (e.g. EfficientNet image
towers have no attention: ``attention`` and ``lora`` act on the ConSE text tower only);
``trainable_counts`` reports it and ``prepare`` raises ``InvalidInput`` if it would train
nothing at all. Third-party methods arrive through the entry-point group
``transferbench.methods``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from estimators.errors import InvalidInput
from estimators.registry import Registry

METHODS = Registry("method", entry_point_group="transferbench.methods")
register_method = METHODS.register

TOWERS = ("image", "text")
TEMPERATURE = ("logit_scale", "logit_bias")  # held at the encoder's values by every method
POOLING = ("attn_pool",)  # attention pooling heads: not transformer blocks
SEPARATE_QKV = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "query": "q", "key": "k", "value": "v"}
_PARAMETRIZED = re.compile(r"parametrizations\.(\w+)\.original$")


def list_methods(pattern: str | list[str] = "*") -> list[str]:
    """Registered method names matching fnmatch pattern(s), sorted."""
    return METHODS.names(pattern)


def get_method(name: str) -> "Method":
    """An instance of the method registered as ``name`` (``UnknownName`` with close matches)."""
    return METHODS.get(name)()


# -- the trainable view of an encoder -----------------------------------------------------
class TunedEncoder(nn.Module):
    """An encoder's backbone with an image and a text head on its L2-normalised embeddings."""

    def __init__(self, model: nn.Module, image_head: nn.Module | None = None,
                 text_head: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.image_head = image_head or nn.Identity()
        self.text_head = text_head or nn.Identity()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings through backbone and head (the name ``encoders.extract`` calls)."""
        return self.image_head(F.normalize(self.model.encode_image(pixels).float(), dim=-1))

    def encode_prompts(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised backbone text embeddings of prompts (the text head acts on class embeddings)."""
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def tower_of(name: str) -> str | None:
    """``image``, ``text`` or None (the temperature) for a ``TunedEncoder`` parameter name."""
    if name.startswith(("model.visual.", "image_head.")):
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


def original_name(name: str) -> str:
    """A parameter's name before parametrisation (``a.parametrizations.w.original`` -> ``a.w``)."""
    return _PARAMETRIZED.sub(r"\1", name)


# -- modules the methods add --------------------------------------------------------------
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
    """Width of the encoder's joint embedding space (one prompt through the text tower)."""
    device = next(encoder.model.parameters()).device
    with torch.no_grad():
        return int(encoder.model.encode_text(encoder.tokenize(["a photo."]).to(device)).shape[-1])


# -- the methods --------------------------------------------------------------------------
class Method:
    """Base class: ``prepare(encoder, config)`` freezes the backbone, lets ``attach`` choose
    what trains, and checks that something does. ``hyperparameters`` names the
    ``FinetuneConfig`` fields the method reads (they enter its result specs)."""

    name = ""
    version = 1
    description = ""
    acts_on = ""  # what the method needs, for the "nothing to train" message
    hyperparameters: tuple[str, ...] = ()

    def prepare(self, encoder, config) -> TunedEncoder:
        """Make ``encoder.model`` trainable in place; return the TunedEncoder around it."""
        if not isinstance(getattr(encoder.model, "visual", None), nn.Module):
            raise InvalidInput(f"encoder {encoder.id}: its model has no `visual` image tower, so methods "
                               f"cannot tell the towers apart")
        encoder.model.requires_grad_(False)
        tuned = self.attach(encoder, config)
        if not any(trainable_counts(tuned).values()):
            raise InvalidInput(f"method {self.name!r} would train nothing in encoder {encoder.id}: it acts on "
                               f"{self.acts_on}, and neither tower has any")
        return tuned

    def attach(self, encoder, config) -> TunedEncoder:
        raise NotImplementedError


@register_method("full")
class Full(Method):
    description = "every tower parameter (the temperature stays fixed)"
    acts_on = "all tower parameters"

    def attach(self, encoder, config):
        for name, p in encoder.model.named_parameters():
            p.requires_grad_(name not in TEMPERATURE)
        return TunedEncoder(encoder.model)


@register_method("bitfit")
class BitFit(Method):
    description = "bias terms only (BitFit; IIMM `bias`)"
    acts_on = "bias terms"

    def attach(self, encoder, config):
        for name, p in encoder.model.named_parameters():
            p.requires_grad_(name.rsplit(".", 1)[-1].endswith("bias") and name not in TEMPERATURE)
        return TunedEncoder(encoder.model)


@register_method("attention")
class Attention(Method):
    description = "attention query/key/value projection weights of transformer blocks (IIMM `attention`)"
    acts_on = "attention Q/K/V projections of transformer blocks"

    def attach(self, encoder, config):
        for proj in attention_projections(encoder.model):
            getattr(proj.module, proj.param).requires_grad_(True)
        return TunedEncoder(encoder.model)


@register_method("lora")
class LoRA(Method):
    description = "low-rank updates of the query and value projections (IIMM `lora`)"
    acts_on = "attention query/value projections of transformer blocks"
    hyperparameters = ("lora_rank", "lora_scale")

    def attach(self, encoder, config):
        for proj in attention_projections(encoder.model):
            rows = {r: s for r, s in proj.rows.items() if r in ("q", "v")}
            if rows:
                update = LoRAUpdate(getattr(proj.module, proj.param), rows, config.lora_rank, config.lora_scale)
                parametrize.register_parametrization(proj.module, proj.param, update)
        return TunedEncoder(encoder.model)


@register_method("clip_adapter")
class ClipAdapter(Method):
    description = "frozen towers, residual bottleneck adapters on both embeddings (CLIP-Adapter; IIMM `adapter`)"
    acts_on = "the image and text embeddings"
    hyperparameters = ("adapter_reduction", "adapter_ratio")

    def attach(self, encoder, config):
        dim = embedding_dim(encoder)
        device = next(encoder.model.parameters()).device
        heads = [ResidualAdapter(dim, config.adapter_reduction, config.adapter_ratio).to(device) for _ in TOWERS]
        return TunedEncoder(encoder.model, *heads)
