"""``smoke``: a tiny random-init open_clip encoder for fast offline tests.

The architecture is data (``configs/tb-smoke.json``: 64-d embeddings, 32 px images,
2-layer ViT and text transformer of width 64), registered with
``open_clip.add_model_config``. Weights are drawn from a fixed seed, so every build
is identical; the tokenizer is open_clip's bundled CLIP BPE (offline).
"""
from __future__ import annotations

from pathlib import Path

from tasks.torchvision_compat import import_open_clip

from .base import Encoder, register_encoder
from .open_clip_encoder import open_clip_encoder

CONFIG = Path(__file__).parent / "configs" / "tb-smoke.json"
ARCH = CONFIG.stem
SEED = 0


@register_encoder("smoke")
def smoke_encoder(device: str = "cpu") -> Encoder:
    open_clip = import_open_clip()
    if ARCH not in open_clip.list_models():
        open_clip.add_model_config(CONFIG)
    return open_clip_encoder(ARCH, None, device=device, seed=SEED)
