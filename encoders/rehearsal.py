"""Rehearsal encoders: the paper's four architectures with random weights, offline, in seconds.

``rehearsal-vitb32``, ``rehearsal-siglip``, ``rehearsal-coca`` and ``rehearsal-eva02`` build
ViT-B-32, ViT-B-16-SigLIP, coca_ViT-B-32 and EVA02-B-16 shrunk within their family (configs in
``configs/rehearsal/``, registered with ``open_clip.add_model_config``): 2 blocks with 2 heads
in each tower, 64-d embeddings and text towers, and images of 2 x 2 patches (64 px for the /32
models, 32 px for the /16 ones). Image towers are 96 wide where the real one is wider than the
embedding (768 vs 512: ViT-B-32, CoCa, EVA-02; CoCa's attentional pooler has separate Q/K/V
projections exactly then), 64 for SigLIP (768 = 768). Everything else is the real layout: the
same open_clip model and tower classes, open_clip's ``nn.MultiheadAttention`` blocks (ViT-B-32,
CoCa and every text tower), CoCa's attentional pooler, and the timm trunks of SigLIP
(``vit_base_patch16_siglip_224``: fused ``qkv``, ``attn_pool`` head) and EVA-02
(``eva02_base_patch16_clip_224``: separate ``q/k/v_proj``, rotary embeddings, SwiGLU), built by
the real timm entrypoints with depth, width, heads and image size overridden
(``configs/rehearsal/timm_trunks.json``).

SigLIP's tokenizer is a stand-in: the real one (``timm/ViT-B-16-SigLIP`` on the HF hub, 32k
SentencePiece) needs a download, so the rehearsal SigLIP configs have no ``hf_tokenizer_name``
and open_clip falls back to its bundled CLIP BPE, with the vocabulary sized to it (49,408). The
config names avoid "siglip": open_clip gives any such name its T5 SigLIP tokenizer (a download).
``rehearsal_encoder(arch, full_size=True)`` builds a paper architecture at full size with random
weights, SigLIP with the same stand-in tokenizer (``tb-fullsize-ViT-B-16-sigmoid``).
"""
from __future__ import annotations

import json
from pathlib import Path

from tasks.torchvision_compat import import_open_clip

from .base import Encoder, register_builder
from .open_clip_encoder import open_clip_encoder

CONFIGS = Path(__file__).parent / "configs" / "rehearsal"
TIMM_TRUNKS = CONFIGS / "timm_trunks.json"
SEED = 0

#: registry name -> (paper architecture, its shrunk open_clip config)
REHEARSAL = {
    "rehearsal-vitb32": ("ViT-B-32", "tb-rehearsal-ViT-B-32"),
    "rehearsal-siglip": ("ViT-B-16-SigLIP", "tb-rehearsal-ViT-B-16-sigmoid"),
    "rehearsal-coca": ("coca_ViT-B-32", "tb-rehearsal-coca_ViT-B-32"),
    "rehearsal-eva02": ("EVA02-B-16", "tb-rehearsal-EVA02-B-16"),
}
#: paper architecture -> the full-size config that builds offline
FULL_SIZE = {"ViT-B-32": "ViT-B-32", "ViT-B-16-SigLIP": "tb-fullsize-ViT-B-16-sigmoid",
             "coca_ViT-B-32": "coca_ViT-B-32", "EVA02-B-16": "EVA02-B-16"}


def register_configs():
    """Register the shrunk timm trunks and the open_clip configs of ``configs/rehearsal/``
    (idempotent); return the open_clip module."""
    open_clip = import_open_clip()
    import timm
    from timm.models import model_entrypoint, register_model

    for name, spec in json.loads(TIMM_TRUNKS.read_text()).items():
        if not timm.is_model(name):
            register_model(_shrunk_trunk(name, model_entrypoint(spec["base"]), spec["shrink"]))
    if not {path.stem for path in CONFIGS.glob("tb-*.json")} <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIGS)
    return open_clip


def _shrunk_trunk(name: str, base, shrink: dict):
    """A timm entrypoint ``name``: the ``base`` entrypoint with ``shrink`` overriding its arguments."""
    def build(pretrained: bool = False, **kwargs):
        return base(pretrained=pretrained, **{**kwargs, **shrink})

    build.__name__ = name
    build.__module__ = base.__module__  # listed beside its family in timm (``timm.list_models(module=...)``)
    return build


def rehearsal_encoder(arch: str, full_size: bool = False, device: str = "cpu") -> Encoder:
    """Paper architecture ``arch`` with seeded random weights: shrunk, or at ``full_size``."""
    register_configs()
    config = FULL_SIZE[arch] if full_size else {a: c for a, c in REHEARSAL.values()}[arch]
    return open_clip_encoder(config, None, device=device, seed=SEED)


for _name, (_arch, _config) in REHEARSAL.items():
    register_builder(_name, rehearsal_encoder, _arch, label=f"rehearsal_encoder[{_arch}]")
