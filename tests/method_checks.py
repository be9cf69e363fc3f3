"""What fine-tuning methods must train, written out from parameter names alone, and the check
that everything else stays bit-identical: shared by the method contract (``test_method_contract``)
and the paper-architecture rehearsal (``test_rehearsal``)."""
from __future__ import annotations

import math
import re

import torch

TEMPERATURE = {"logit_scale", "logit_bias"}
# The attention Q/K/V weights of transformer blocks, written out per family: open_clip's fused
# MultiheadAttention, timm ViT's fused qkv (SigLIP), timm EVA's separate projections.
BLOCK_ATTENTION = re.compile(r"\.(resblocks|blocks)\.\d+\.attn\.(in_proj_weight|qkv\.weight|[qkv]_proj\.weight)$")
PARAMETRIZED = re.compile(r"parametrizations\.(\w+)\.original$")


def expected_trainable(model: torch.nn.Module, method: str, embed_dim: int, lora_rank: int = 4,
                       adapter_reduction: int = 4, n_classes: int | None = None,
                       image_only: bool = False) -> dict[str, tuple[int, ...]] | None:
    """Name -> shape of what built-in ``method`` should train (None for any other method).
    ``n_classes``: the target's, for the linear head (``linear``; every method on an image-only
    model, ``image_only``, whose ImageNet classifier ``model.visual.fc``/``head`` is then not in the
    graph: left out here, reported unused by the loop)."""
    head = {"classifier.weight": (n_classes, embed_dim), "classifier.bias": (n_classes,)}
    if method == "linear":
        return head
    found = _expected_backbone(model, method, embed_dim, lora_rank, adapter_reduction)
    if found is None or not image_only:
        return found
    return {**{n: s for n, s in found.items() if not SOURCE_HEAD.search(n)}, **head}


#: an image-only (timm) model's own classifier, outside the fine-tuning graph
SOURCE_HEAD = re.compile(r"^model\.visual\.(fc|head|head\.fc|classifier)\.(weight|bias)$")


def _expected_backbone(model, method, embed_dim, lora_rank, adapter_reduction):
    params = {f"model.{n}": tuple(p.shape) for n, p in model.named_parameters()}
    tower = {n: p for n, p in params.items() if n.split(".")[-1] not in TEMPERATURE}
    if method == "full":
        return tower
    if method == "bitfit":
        return {n: s for n, s in tower.items() if re.search(r"(^|_)bias$", n.split(".")[-1])}
    attention = {n: s for n, s in tower.items() if BLOCK_ATTENTION.search(n)}
    if method == "attention":
        return attention
    if method == "lora":  # rank-r A (r, in) and B (rows, r) per query and value block of each weight
        out, r = {}, lora_rank
        for n, (rows, cols) in attention.items():
            module, param = n.rsplit(".", 1)
            fused = param == "in_proj_weight" or module.endswith(".qkv")
            roles = "qv" if fused else {"q_proj": "q", "k_proj": "", "v_proj": "v"}[module.rsplit(".", 1)[-1]]
            for role in roles:
                d = rows // 3 if fused else rows
                out[f"{module}.parametrizations.{param}.0.A.{role}"] = (r, cols)
                out[f"{module}.parametrizations.{param}.0.B.{role}"] = (d, r)
        return out
    if method == "clip_adapter":  # Linear(D, D/r) and Linear(D/r, D), no bias, on each tower's embedding
        d, h = embed_dim, embed_dim // adapter_reduction
        return {f"{head}.fc.{i}.weight": shape for head in ("image_head", "text_head")
                for i, shape in ((0, (h, d)), (2, (d, h)))}
    return None


def tower_counts(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    image = sum(math.prod(s) for n, s in shapes.items()
                if n.startswith(("model.visual.", "image_head.", "classifier.")))
    return {"image": image, "text": sum(math.prod(s) for s in shapes.values()) - image}


def assert_only_claimed_moved(tuned: torch.nn.Module, before: dict[str, torch.Tensor],
                              claimed: dict[str, torch.Tensor]) -> None:
    """After training: every ``claimed`` tensor (its value at the start) moved and is finite; every
    backbone parameter of ``before`` (the model's parameters at the start, LoRA's base weights
    under their parametrised names included) is bit-identical."""
    after = dict(tuned.named_parameters())
    for n, value in claimed.items():
        assert torch.isfinite(after[n]).all() and not torch.equal(after[n], value), f"{n} did not move"
    frozen = {PARAMETRIZED.sub(r"\1", n.removeprefix("model.")): p for n, p in after.items()
              if n.startswith("model.") and n not in claimed}
    assert set(frozen) == set(before) - {n.removeprefix("model.") for n in claimed}
    for n, p in frozen.items():
        assert torch.equal(p, before[n]), f"frozen {n} changed"
