"""The Encoder contract and the encoder registry.

An encoder is a dual (image, text) model with an open_clip-like API, so one
embedding loop and one fine-tuning loop serve every encoder, or an image-only model
(``has_text`` False: a timm ImageNet classifier, ``encoders.timm_encoder``):

* ``model.encode_image(pixels) -> (B, D)`` and ``model.encode_text(tokens) -> (B, D)``
  (not necessarily normalised; zero-shot logits are ``logit_scale * cos + logit_bias``)
* ``preprocess(PIL image) -> (3, H, W)`` tensor, ``tokenize(list[str]) -> tokens``
* ``logit_scale`` as a plain multiplier (CLIP: 100), ``logit_bias`` (SigLIP) or None
* ``preprocess_cfg()``, ``weights_tag`` and ``versions``: everything that changes the
  embedding bytes, for content-addressed caches
* image-only: ``tokenize``, ``logit_scale`` and ``logit_bias`` are None and the model has no
  ``encode_text``; it may have ``encode_image_and_logits(pixels) -> (features, source logits)``
  (its own source classifier, e.g. an ImageNet head: the EmbeddingSet's ``source_logits``).
  Whatever needs text checks ``has_text`` (zero-shot accuracy, text estimators, prompt methods).

Registry entries are factories ``f(device) -> Encoder`` registered under short names
(``vitb32-openai``, ``conse-lite0``, ``smoke``) by the modules of this package, which the
registry imports on first use. An id scheme is a prefix with a builder ``f(rest, device)``
(``register_prefix``): ``open_clip_encoder`` registers ``open_clip:`` for
``open_clip:ARCH/TAG``, ``open_clip:ARCH/CHECKPOINT_FILE``, ``open_clip:hf-hub:ORG/NAME`` and
``open_clip:local-dir:FOLDER``; ``timm_encoder`` registers ``timm:`` for ``timm:ARCH.TAG``,
``timm:ARCH`` (random init) and ``timm:ARCH[.TAG]/CHECKPOINT_FILE``.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable

from estimators.errors import InvalidInput
from estimators.registry import Registry

ENCODERS = Registry("encoder", entry_point_group="transferbench.encoders", package="encoders",
                    infrastructure=("base", "cache", "extract"))
register_encoder = ENCODERS.register
PREFIXES: dict[str, Callable[..., "Encoder"]] = {}  # id scheme -> builder(rest_of_the_id, device=...)


class EncoderUnavailable(InvalidInput):
    """The encoder exists but cannot be built here (e.g. weights need a download)."""


@dataclass
class Encoder:
    id: str
    model: Any  # torch.nn.Module with encode_image / encode_text (image-only: encode_image only)
    preprocess: Callable
    tokenize: Callable | None  # None: an image-only encoder (no text tower)
    logit_scale: float | None  # None for an image-only encoder (no zero-shot classifier)
    logit_bias: float | None
    weights_tag: str
    preprocess_config: dict
    versions: dict[str, str] = field(default_factory=dict)
    name: str = ""

    @property
    def has_text(self) -> bool:
        """Whether the encoder has a text tower (False: image-only, no zero-shot classifier)."""
        return self.tokenize is not None

    def preprocess_cfg(self) -> dict:
        """JSON-able description of everything that changes the pixels."""
        return dict(self.preprocess_config)

    def __repr__(self) -> str:
        return f"Encoder({self.id!r}, weights_tag={self.weights_tag!r})"


def register_builder(name: str, builder: Callable[..., "Encoder"], *args, label: str) -> None:
    """Register ``name`` as a factory ``f(device) -> builder(*args, device=device)``."""
    def build(device: str = "cpu") -> Encoder:
        return builder(*args, device=device)

    build.__qualname__ = build.__doc__ = label
    build.__module__ = builder.__module__  # the module that knows the encoder (e.g. its weights_status)
    register_encoder(name)(build)


def register_prefix(prefix: str):
    """Decorator: ``builder(rest, device=...)`` builds every encoder id ``prefix + rest``."""
    def decorator(builder):
        PREFIXES[prefix] = builder
        return builder

    return decorator


def list_encoders(pattern: str | list[str] = "*") -> list[str]:
    """Registered encoder names matching fnmatch pattern(s), sorted."""
    return ENCODERS.names(pattern)


def id_scheme(name: str) -> str | None:
    """The registered prefix ``name`` starts with, if any."""
    ENCODERS.load_plugins()
    return next((p for p in PREFIXES if name.startswith(p)), None)


def check_encoder_id(name: str) -> None:
    """``UnknownName`` (with close matches) unless ``name`` is a registered name or starts with an id
    scheme; the weights are found (or not) when the encoder is built."""
    if id_scheme(name) is None:
        ENCODERS.get(name)


def get_encoder(name: str, device: str = "cpu") -> Encoder:
    """Build the encoder registered as ``name``, or of an id scheme (``open_clip:ARCH/TAG``), in eval mode."""
    prefix = id_scheme(name)
    encoder = PREFIXES[prefix](name[len(prefix):], device=device) if prefix else ENCODERS.get(name)(device=device)
    encoder.name = name
    encoder.model.eval()
    return encoder


@functools.lru_cache(maxsize=1)
def shared_encoder(name: str) -> Encoder:
    """The CPU encoder ``name``, built once per process and reused while consecutive cells use
    it (grids are encoder-major). Treat it as read-only: training works on a copy of its model."""
    return get_encoder(name, device="cpu")


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` ("absent" when not installed)."""
    found = {}
    for p in packages:
        try:
            found[p] = version(p)
        except PackageNotFoundError:
            found[p] = "absent"
    return found


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, memoised per process while the file's size, mtime and inode stay."""
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
