"""open_clip encoders: any (architecture, pretrained tag) pair, or an ``hf-hub:`` model.

Identities follow open_clip: ``open_clip:ARCH/TAG`` (e.g. ``open_clip:ViT-B-32/openai``),
``open_clip:hf-hub:ORG/NAME``, or ``open_clip:ARCH`` for a seeded random init
(architecture only). TAG may also be a local checkpoint file. The paper's four
encoders (arXiv 2407.15731) are registered under short names.

Weights come from the HF hub (or open_clip's URLs) on first use and then from the
local cache. Offline, a missing download raises ``EncoderUnavailable`` (one line);
set ``HF_HUB_OFFLINE=1`` so it fails at once instead of after ~45 s of retries.
SigLIP keeps its ``logit_bias``. CoCa keeps only its contrastive towers (its
captioning decoder is dropped): ``encode_image`` / ``encode_text`` return its
contrastive latents.
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch

from estimators.errors import InvalidInput
from estimators.registry import UnknownName, did_you_mean

from .base import Encoder, EncoderUnavailable, file_sha256, package_versions, register_builder
from .torchvision_compat import import_open_clip

HF_HUB_PREFIX = "hf-hub:"

#: registry name -> (open_clip architecture or hf-hub name, pretrained tag)
PAPER_ENCODERS = {
    "vitb32-openai": ("ViT-B-32", "openai"),
    "vitb16-siglip-webli": ("hf-hub:timm/ViT-B-16-SigLIP", None),
    "coca-vitb32-laion2b": ("coca_ViT-B-32", "laion2b_s13b_b90k"),
    "eva02-b16-merged2b": ("EVA02-B-16", "merged2b_s8b_b131k"),
}


def open_clip_encoder(arch: str, pretrained: str | None = None, device: str = "cpu",
                      seed: int = 0) -> Encoder:
    """Wrap ``open_clip.create_model_and_transforms(arch, pretrained)``.

    ``pretrained=None`` (and no ``hf-hub:`` prefix) gives a random init drawn from
    ``seed`` without touching the global RNG state.
    """
    open_clip = import_open_clip()
    hub = arch.startswith(HF_HUB_PREFIX)
    local_file = pretrained is not None and os.path.isfile(pretrained)
    if not hub:
        _check_known(open_clip, arch, pretrained, local_file)
    if hub:
        tag, weights_tag = None, arch
    elif pretrained is None:
        tag = weights_tag = f"random-init-seed{seed}"
    elif local_file:
        tag, weights_tag = os.path.basename(pretrained), f"sha256:{file_sha256(pretrained)}"
    else:
        tag = weights_tag = pretrained
    encoder_id = f"open_clip:{arch}" + (f"/{tag}" if tag else "")

    downloads = hub or (pretrained is not None and not local_file)
    with torch.random.fork_rng(devices=[]), _quiet(downloads):
        try:  # first: it fails fastest where a download is needed (hf-hub, SigLIP's HF tokenizer)
            tokenizer = open_clip.get_tokenizer(arch)
        except (RuntimeError, OSError) as exc:
            what = "the model config" if hub else "the tokenizer"
            raise EncoderUnavailable(_needs_download(encoder_id, what, exc)) from None
        torch.manual_seed(seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained,
                                                                         device=device)
        except (RuntimeError, OSError) as exc:
            if not downloads:
                raise
            raise EncoderUnavailable(_needs_download(encoder_id, "pretrained weights", exc)) from None
    if hasattr(model, "text_decoder"):  # CoCa: keep the contrastive towers only
        del model.text_decoder
    bias = getattr(model, "logit_bias", None)
    return Encoder(
        id=encoder_id,
        model=model,
        preprocess=preprocess,
        tokenize=tokenizer,
        logit_scale=float(model.logit_scale.detach().exp()),
        logit_bias=None if bias is None else float(bias.detach()),
        weights_tag=weights_tag,
        preprocess_config=_jsonable(open_clip.get_model_preprocess_cfg(model)),
        versions=package_versions("torch", "torchvision", "open_clip_torch", "timm"),
    )


def from_spec(spec: str, device: str = "cpu") -> Encoder:
    """Build from ``ARCH/TAG``, ``ARCH`` (random init) or ``hf-hub:ORG/NAME``."""
    if spec.startswith(HF_HUB_PREFIX):
        return open_clip_encoder(spec, None, device=device)
    arch, _, tag = spec.partition("/")
    return open_clip_encoder(arch, tag or None, device=device)


def _check_known(open_clip, arch: str, pretrained: str | None, local_file: bool) -> None:
    if arch not in open_clip.list_models():
        raise UnknownName(did_you_mean("open_clip architecture", arch, open_clip.list_models()))
    if pretrained is None or local_file:
        return
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained not in tags:
        raise InvalidInput(f"open_clip {arch} has no pretrained tag {pretrained!r} and no such file; "
                           f"known tags: {', '.join(tags) or 'none'}")


def _needs_download(encoder_id: str, what: str, exc: Exception) -> str:
    return (f"{encoder_id}: could not download {what} and found no local copy ({type(exc).__name__}); "
            f"this encoder needs internet once, or a warm HF cache (HF_HOME); "
            f"with HF_HUB_OFFLINE=1 it fails at once")


@contextlib.contextmanager
def _quiet(active: bool):
    """Silence open_clip's and huggingface_hub's download error logging (we raise one line instead)."""
    previous = logging.root.manager.disable
    if active:
        logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def _jsonable(cfg: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


for _name, (_arch, _tag) in PAPER_ENCODERS.items():
    register_builder(_name, open_clip_encoder, _arch, _tag, label=f"open_clip_encoder[{_arch}/{_tag}]")
