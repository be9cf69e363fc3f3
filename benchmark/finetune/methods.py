"""Fine-tuning methods: which parameters of an encoder train, and the modules they add.

A method turns an ``Encoder`` into a ``benchmark.finetune.tuned.TunedEncoder`` (its backbone ``model``
plus an image and a text head on the embeddings, identity unless the method adds one) whose
parameters with ``requires_grad`` are exactly the ones it trains. The five methods of the IIMM paper
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

Beyond the paper: ``linear``: a frozen backbone and a new linear head (``benchmark.finetune.tuned.LinearHead``,
zero-initialised) on the L2-normalised image embedding, trained with cross-entropy over the target
task's classes: linear probing, the standard recipe for classic model zoos (on a dual encoder the
same head replaces its class-prompt logits on the target; its frozen towers still classify the
other tasks zero-shot, so it forgets nothing).

Image-only encoders (``Encoder.has_text`` False, e.g. ``timm:``) have no class-prompt logits, so
every method trains with the same linear head on the target's classes: ``full`` trains the head
and the whole image tower (the model's own ImageNet classifier is not in the graph and is
reported as unused), ``linear`` the head alone; ``bitfit``, ``attention`` and ``lora`` act on the
image tower as on a dual encoder, plus the head (``attention`` and ``lora`` need transformer
blocks: on a CNN they say they would train nothing). ``clip_adapter`` adapts the class-prompt
embeddings too, so it does not apply to image-only encoders and says so (``needs_text``).

A method's own hyper-parameters and their defaults live with it (``hyperparameters``; a
suite's ``finetune`` preset sets them per method in ``overrides`` or searches them in
``sweep``), and ``check`` says which values it accepts. Towers (``benchmark.finetune.tuned``): the
image tower is the backbone's ``visual`` module plus the image head, the rest is text. A
method with nothing to act on in one tower trains nothing there (e.g. EfficientNet image
towers have no attention: ``attention`` and ``lora`` act on the ConSE text tower only);
``trainable_counts`` reports it and ``prepare`` raises ``InvalidInput`` if it would train
nothing at all. This module imports no torch (``benchmark.finetune.tuned`` holds the modules), so
listing methods and validating a suite stay light. Third-party methods arrive through the
entry-point group ``transferbench.methods``; ``tests/test_method_contract.py`` tests every
registered method.
"""
from __future__ import annotations

from numbers import Real
from typing import Any, Mapping

from estimators.errors import InvalidInput
from estimators.registry import Registry

METHODS = Registry("method", entry_point_group="transferbench.methods")
register_method = METHODS.register


def list_methods(pattern: str | list[str] = "*") -> list[str]:
    """Registered method names matching fnmatch pattern(s), sorted."""
    return METHODS.names(pattern)


def get_method(name: str) -> "Method":
    """An instance of the method registered as ``name`` (``UnknownName`` with close matches)."""
    return METHODS.get(name)()


class Method:
    """Base class: ``prepare(encoder, config)`` freezes the backbone, lets ``attach`` choose what
    trains, and checks that something does. ``hyperparameters``: the method's own settings and
    their defaults (names unique across methods: they sit beside the generic ones in a
    ``FinetuneConfig`` and in result specs); ``attach`` reads them from ``config.method_args``."""

    name = ""
    version = 1
    description = ""
    acts_on = ""  # what the method needs, for the "nothing to train" message
    hyperparameters: Mapping[str, Any] = {}
    #: trains a linear head on the target's classes even where class prompts exist (``linear``)
    linear_head = False
    #: why the method needs a text tower (it does not apply to image-only encoders); "" when it does not
    needs_text = ""

    def check(self, args: Mapping[str, Any]) -> None:
        """Raise ``InvalidInput`` naming the first hyper-parameter value the method cannot use."""

    def prepare(self, encoder, config, task=None):
        """Make ``encoder.model`` trainable in place; return the TunedEncoder around it. ``task``: the
        target task, needed where a linear head is added (``linear``; any method on an image-only
        encoder) for its classes."""
        from torch import nn

        from benchmark.finetune.tuned import embedding_dim, trainable_counts

        if not isinstance(getattr(encoder.model, "visual", None), nn.Module):
            raise InvalidInput(f"encoder {encoder.id}: its model has no `visual` image tower, so methods "
                               f"cannot tell the towers apart")
        image_only = not getattr(encoder, "has_text", True)
        if image_only and self.needs_text:
            raise NotApplicable(f"method {self.name!r} does not apply to encoder {encoder.id}: it is image-only "
                               f"(no text tower) and {self.name} {self.needs_text}")
        encoder.model.requires_grad_(False)
        tuned = self.attach(encoder, config.for_method(self))
        if not self.linear_head and not any(trainable_counts(tuned).values()):
            where = "its image tower has none" if image_only else "neither tower has any"
            raise NotApplicable(f"method {self.name!r} would train nothing in encoder {encoder.id}: it acts on "
                                f"{self.acts_on}, and {where}")
        if self.linear_head or image_only:
            if task is None:
                raise InvalidInput(f"method {self.name!r} on encoder {encoder.id} trains a linear head: "
                                   f"prepare it with the target task (its classes)")
            tuned.add_classifier(embedding_dim(encoder), task)
        return tuned

    def attach(self, encoder, config):
        raise NotImplementedError


class NotApplicable(InvalidInput):
    """The method does not apply to this encoder (it needs a text tower, or finds nothing to train):
    a grid runner skips the cell with this reason."""


def _expect(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise InvalidInput(f"{name} must be {expected}, got {value!r}")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@register_method("full")
class Full(Method):
    description = "every tower parameter (the temperature stays fixed)"
    acts_on = "all tower parameters"

    def attach(self, encoder, config):
        from benchmark.finetune.tuned import TEMPERATURE, TunedEncoder

        for name, p in encoder.model.named_parameters():
            p.requires_grad_(name not in TEMPERATURE)
        return TunedEncoder(encoder.model)


@register_method("bitfit")
class BitFit(Method):
    description = "bias terms only (BitFit; IIMM `bias`)"
    acts_on = "bias terms"

    def attach(self, encoder, config):
        from benchmark.finetune.tuned import TEMPERATURE, TunedEncoder

        for name, p in encoder.model.named_parameters():
            p.requires_grad_(name.rsplit(".", 1)[-1].endswith("bias") and name not in TEMPERATURE)
        return TunedEncoder(encoder.model)


@register_method("attention")
class Attention(Method):
    description = "attention query/key/value projection weights of transformer blocks (IIMM `attention`)"
    acts_on = "attention Q/K/V projections of transformer blocks"

    def attach(self, encoder, config):
        from benchmark.finetune.tuned import TunedEncoder, attention_projections

        for proj in attention_projections(encoder.model):
            getattr(proj.module, proj.param).requires_grad_(True)
        return TunedEncoder(encoder.model)


@register_method("lora")
class LoRA(Method):
    description = "low-rank updates of the query and value projections (IIMM `lora`)"
    acts_on = "attention query/value projections of transformer blocks"
    hyperparameters = {"lora_rank": 4, "lora_scale": 0.2}

    def check(self, args):
        _expect(_count(args["lora_rank"]), "lora_rank", "an integer >= 1", args["lora_rank"])
        _expect(isinstance(args["lora_scale"], Real) and not isinstance(args["lora_scale"], bool), "lora_scale",
                "a number", args["lora_scale"])

    def attach(self, encoder, config):
        from torch.nn.utils import parametrize

        from benchmark.finetune.tuned import LoRAUpdate, TunedEncoder, attention_projections

        rank, scale = config.method_args["lora_rank"], config.method_args["lora_scale"]
        for proj in attention_projections(encoder.model):
            rows = {r: s for r, s in proj.rows.items() if r in ("q", "v")}
            if rows:
                update = LoRAUpdate(getattr(proj.module, proj.param), rows, rank, scale)
                parametrize.register_parametrization(proj.module, proj.param, update)
        return TunedEncoder(encoder.model)


@register_method("linear")
class Linear(Method):
    description = "frozen backbone, a new zero-initialised linear head on the image embedding (linear probing)"
    acts_on = "a linear head on the image embedding"
    linear_head = True

    def attach(self, encoder, config):
        from benchmark.finetune.tuned import TunedEncoder

        return TunedEncoder(encoder.model)


@register_method("clip_adapter")
class ClipAdapter(Method):
    description = "frozen towers, residual bottleneck adapters on both embeddings (CLIP-Adapter; IIMM `adapter`)"
    acts_on = "the image and text embeddings"
    needs_text = "adapts the class-prompt embeddings of the text tower too"
    hyperparameters = {"adapter_reduction": 4, "adapter_ratio": 0.2}

    def check(self, args):
        _expect(_count(args["adapter_reduction"]), "adapter_reduction", "an integer >= 1", args["adapter_reduction"])
        ratio = args["adapter_ratio"]
        _expect(isinstance(ratio, Real) and not isinstance(ratio, bool) and 0 <= ratio <= 1, "adapter_ratio",
                "a number in [0, 1]", ratio)

    def attach(self, encoder, config):
        from benchmark.finetune.tuned import TOWERS, ResidualAdapter, TunedEncoder, embedding_dim

        dim = embedding_dim(encoder)
        device = next(encoder.model.parameters()).device
        args = config.method_args
        heads = [ResidualAdapter(dim, args["adapter_reduction"], args["adapter_ratio"]).to(device) for _ in TOWERS]
        return TunedEncoder(encoder.model, *heads)
