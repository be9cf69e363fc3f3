"""Image-only encoders from timm: ImageNet classifiers (and any other timm model) as encoders.

Identities follow timm's ``ARCH.TAG`` names under the ``timm:`` id scheme:

* ``timm:ARCH.TAG`` (e.g. ``timm:resnet50.a1_in1k``): timm's pretrained weights for that tag,
  through timm's own hub mechanism (the HF hub, or a URL into torch's hub cache for the few
  URL-only tags). Offline, weights that are not in the cache give one ``EncoderUnavailable``
  line (set ``HF_HUB_OFFLINE=1`` so it fails at once).
* ``timm:ARCH`` (architecture only, e.g. ``timm:resnet50`` or timm's tiny ``timm:test_resnet``):
  a seeded random init, as ``open_clip:ARCH`` (id ``timm:ARCH/random-init-seed0``); this is the
  offline rehearsal of an image-only zoo. Note that timm itself would give ``resnet50`` its
  default pretrained tag: here a pretrained tag is always spelled out.
* ``timm:ARCH[.TAG]/FILE`` (e.g. ``timm:resnet50.a1_in1k/~/ckpt/resnet50.safetensors``): a local
  checkpoint (``.safetensors``, ``.pth``, ``.pt``, ``.bin``; a timm state dict, loaded strictly)
  for architecture ARCH; the optional TAG only chooses the preprocessing (that tag's data config).
  A file is identified by its bytes: id ``timm:ARCH[.TAG]/sha256:<12 hex>``, weights tag
  ``sha256:<64 hex>`` (``encoders.base.file_sha256``).

The preprocessing is timm's: ``resolve_data_config`` of the model's pretrained config and
``create_transform`` (resize, centre crop, normalise), after a conversion to RGB; the resolved
data config is the encoder's ``preprocess_cfg`` (part of the embedding cache key).

An image-only encoder has no text tower: ``Encoder.tokenize`` is None (``Encoder.has_text`` is
False), ``logit_scale`` / ``logit_bias`` are None. Its model (``ImageOnlyModel``) keeps the open_clip
layout the harness relies on: the timm model is its ``visual`` tower, ``encode_image`` returns the
pooled pre-logits features (``forward_features`` then ``forward_head(pre_logits=True)``), and
``encode_image_and_logits`` also returns the model's own classifier logits (its ImageNet head),
which ``encoders.extract`` stores as the EmbeddingSet's ``source_logits`` (LEEP and NCE use them
as the source model). A model without a classifier (``num_classes == 0``) has no source logits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from estimators.errors import InvalidInput
from estimators.registry import UnknownName, did_you_mean
from tasks.torchvision_compat import import_torchvision

from .base import Encoder, EncoderUnavailable, file_sha256, package_versions, register_prefix
from .open_clip_encoder import Weights, _hub_file, _local_path, _looks_like_path, _quiet, _weights

PREFIX = "timm:"  # the id scheme this module registers
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # timm's order on the HF hub
SEED = 0


def import_timm():
    """``import timm`` after the torchvision import that works with this torch build."""
    import_torchvision()
    import timm

    return timm


class ImageOnlyModel(nn.Module):
    """A timm model as an image-only encoder: ``visual`` is the timm model; no ``encode_text``."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.visual = trunk
        #: width of ``encode_image`` (timm's pre-logits width)
        self.embed_dim = int(getattr(trunk, "head_hidden_size", None) or trunk.num_features)
        #: classes of the model's own (source, e.g. ImageNet) classifier; 0: it has none
        self.n_source_classes = int(getattr(trunk, "num_classes", 0) or 0)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled pre-logits features (not normalised)."""
        return self.visual.forward_head(self.visual.forward_features(pixels), pre_logits=True)

    def encode_image_and_logits(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pre-logits features (B, D), the source classifier's logits (B, K) or None), one trunk pass."""
        features = self.visual.forward_features(pixels)
        logits = self.visual.forward_head(features) if self.n_source_classes else None
        return self.visual.forward_head(features, pre_logits=True), logits


def to_rgb(image):
    """PIL image -> RGB (timm's eval transform assumes three channels); module level: picklable."""
    return image if getattr(image, "mode", "RGB") == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class Spec:
    """A parsed ``timm:`` id: timm model name (``ARCH`` or ``ARCH.TAG``) and an optional checkpoint path."""

    name: str
    file: str | None = None

    @property
    def arch(self) -> str:
        return self.name.partition(".")[0]

    @property
    def tag(self) -> str | None:
        return self.name.partition(".")[2] or None


def parse_spec(spec: str) -> Spec:
    """``ARCH``, ``ARCH.TAG`` or ``ARCH[.TAG]/FILE`` -> Spec."""
    name, _, file = spec.partition("/")
    if not name:
        raise InvalidInput(f"timm encoder id {PREFIX}{spec!r} names no architecture (timm:ARCH[.TAG][/FILE])")
    return Spec(name, file or None)


def _check_name(timm, spec: Spec) -> None:
    """UnknownName for an unknown architecture; InvalidInput for an unknown pretrained tag."""
    if not timm.is_model(spec.arch):
        raise UnknownName(did_you_mean("timm architecture", spec.arch, timm.list_models()))
    if spec.tag and spec.name not in timm.list_pretrained(f"{spec.arch}.*"):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{spec.arch}.*")]
        raise InvalidInput(f"timm {spec.arch} has no pretrained tag {spec.tag!r}; "
                           f"known tags: {', '.join(tags) or 'none'}")


def locate(spec: Spec) -> Weights:
    """Where the weights of ``spec`` come from and what of them is missing here, without downloading:
    ``random`` (no tag, no file), ``file`` (a local checkpoint), ``hub`` (the HF cache) or ``url``
    (torch's hub cache, for URL-only tags)."""
    timm = import_timm()
    _check_name(timm, spec)
    if spec.file:
        path = _local_path(spec.file)
        return Weights("file", found=(str(path),)) if path.is_file() else \
            Weights("file", missing=(f"checkpoint file {path}",))
    if not spec.tag:
        return Weights("random")
    cfg = timm.models.get_pretrained_cfg(spec.name).to_dict()
    if cfg.get("hf_hub_id"):
        return _weights("hub", [_hub_file(cfg["hf_hub_id"], (cfg.get("hf_hub_filename"),) if
                                          cfg.get("hf_hub_filename") else HUB_WEIGHTS)])
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.get("url") or cfg.get("file") or "")
    return _weights("url", [(str(path) if path.is_file() else None, str(path))])


def timm_encoder(name: str, file: str | None = None, device: str = "cpu", seed: int = SEED) -> Encoder:
    """An image-only Encoder around ``timm.create_model(name)``: pretrained when ``name`` carries a
    tag, loaded from ``file`` when given, else a random init drawn from ``seed`` (the global RNG is
    left alone)."""
    timm = import_timm()
    from timm.data import create_transform, resolve_data_config

    spec = Spec(name, file)
    weights = locate(spec)
    if weights.kind == "file":
        if not weights.present:
            raise EncoderUnavailable(f"{PREFIX}{name}: not found: {'; '.join(weights.missing)}")
        digest = file_sha256(weights.found[0])
        encoder_id, weights_tag = f"{PREFIX}{name}/sha256:{digest[:12]}", f"sha256:{digest}"
    elif weights.kind == "random":
        weights_tag = f"random-init-seed{seed}"
        encoder_id = f"{PREFIX}{name}/{weights_tag}"
    else:
        encoder_id, weights_tag = f"{PREFIX}{name}", name

    pretrained = weights.kind in ("hub", "url")
    with torch.random.fork_rng(devices=[]), _quiet(pretrained):
        torch.manual_seed(seed)
        try:
            trunk = timm.create_model(name, pretrained=pretrained)
        except (RuntimeError, OSError) as exc:
            if not pretrained:
                raise
            raise EncoderUnavailable(_needs_download(encoder_id, exc)) from None
    if weights.kind == "file":
        _load_checkpoint(trunk, weights.found[0], encoder_id)
    data_cfg = resolve_data_config({}, model=trunk)
    preprocess = _compose(create_transform(**data_cfg, is_training=False))
    model = ImageOnlyModel(trunk).to(device)
    return Encoder(
        id=encoder_id,
        model=model,
        preprocess=preprocess,
        tokenize=None,
        logit_scale=None,
        logit_bias=None,
        weights_tag=weights_tag,
        preprocess_config=_preprocess_cfg(data_cfg),
        versions=package_versions("torch", "torchvision", "timm"),
    )


@register_prefix(PREFIX)
def from_spec(spec: str, device: str = "cpu") -> Encoder:
    """any timm model, image-only: timm:ARCH.TAG (pretrained), timm:ARCH (random init), timm:ARCH[.TAG]/FILE"""
    parsed = parse_spec(spec)
    if parsed.file is None and "/" not in spec and _looks_like_path(parsed.name) and \
            parsed.name.endswith((".safetensors", ".bin", ".pth", ".pt")):
        raise InvalidInput(f"timm encoder id {PREFIX}{spec!r}: a checkpoint file goes after the architecture, "
                           f"timm:ARCH[.TAG]/FILE")
    return timm_encoder(parsed.name, parsed.file, device=device)


def _load_checkpoint(trunk: nn.Module, path: str, encoder_id: str) -> None:
    """Load a timm state dict (safetensors or torch file, optionally under ``state_dict`` / ``model``) strictly."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(path, weights_only=True)
        trunk.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise InvalidInput(f"{encoder_id}: {path} is not a checkpoint of this architecture ({first})") from None


def _compose(transform):
    from tasks.torchvision_compat import import_torchvision

    transforms = import_torchvision().transforms
    return transforms.Compose([to_rgb, *getattr(transform, "transforms", [transform])])


def _preprocess_cfg(data_cfg: dict) -> dict:
    """timm's resolved data config as JSON (plus ``size``, the pixel size, and the RGB conversion)."""
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()}
    return {"library": "timm", **cfg, "size": list(data_cfg["input_size"][1:]), "to_rgb": True}


def _needs_download(encoder_id: str, exc: Exception) -> str:
    return (f"{encoder_id}: could not download its pretrained weights and found no local copy "
            f"({type(exc).__name__}); this encoder needs internet once, a warm HF cache (HF_HOME) or a local "
            f"checkpoint (timm:ARCH[.TAG]/FILE); with HF_HUB_OFFLINE=1 it fails at once")
