"""Fold eval-mode BatchNorm into the convolution before it, for faster evaluation passes.

In eval mode BatchNorm is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * w + b``,
so ``Conv2d -> BatchNorm`` equals one ``Conv2d`` with weight ``W * s`` and bias
``(c - mean) * s + b``, ``s = w / sqrt(var + eps)``: the same function up to float rounding
(unit embeddings of the ConSE towers agree to ~3e-7), and on one CPU thread the EfficientNet-Lite
towers run ~1.45x faster (BatchNorm was a quarter of their inference time).
``benchmark.finetune.loop.accuracy`` evaluates a fine-tuned image tower through a folded copy;
training never sees it (there the BatchNorm affine parameters may train).

Only pairs whose data flow is known are folded: consecutive ``Conv2d`` / BatchNorm children of
an ``nn.Sequential``, and the named pairs of timm's EfficientNet / MobileNet blocks (their
``forward`` applies the convolution and then its norm, nothing in between). Any other module
is left as it is, so folding never changes what an unknown architecture computes.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

#: timm class name -> (conv, norm) child pairs applied back to back in its ``forward``
TIMM_PAIRS = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_s2d", "bn_s2d"), ("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_s2d", "bn_s2d"), ("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "ConvBnAct": (("conv", "bn1"),),
    "EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
}


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    if isinstance(module, nn.Sequential):
        names = [n for n, _ in module.named_children()]
        return list(zip(names, names[1:]))
    if type(module).__module__.startswith("timm."):
        return list(TIMM_PAIRS.get(type(module).__name__, ()))
    return []


def _foldable(conv, norm) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and not norm.training and norm.running_mean is not None and norm.affine
            and norm.num_features == conv.out_channels)


def _after_norm(norm: nn.Module) -> nn.Module:
    """What is left of a norm layer once its affine map is in the conv: timm's BatchNormAct2d
    keeps its dropout and activation, a plain BatchNorm becomes the identity."""
    if hasattr(norm, "act") and hasattr(norm, "drop"):
        return nn.Sequential(norm.drop, norm.act)
    return nn.Identity()


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every known eval-mode ``Conv2d -> BatchNorm`` pair of ``model`` in place; returns the count."""
    folded = 0
    for parent in list(model.modules()):
        for conv_name, norm_name in _pairs(parent):
            conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
            if not _foldable(conv, norm):
                continue
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shift = norm.bias - norm.running_mean * scale
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
            conv.bias = nn.Parameter(shift, requires_grad=False)
            setattr(parent, norm_name, _after_norm(norm))
            folded += 1
    return folded


@contextlib.contextmanager
def folded_visual(model: nn.Module):
    """Within the block ``model.visual`` is a folded copy (``model`` is restored afterwards)."""
    visual = model.visual
    twin = copy.deepcopy(visual).eval()
    fold_batchnorm(twin)
    model.visual = twin
    try:
        yield model
    finally:
        model.visual = visual
