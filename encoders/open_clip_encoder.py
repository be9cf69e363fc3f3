"""open_clip encoders: any (architecture, pretrained tag) pair, a local checkpoint, or an ``hf-hub:`` model.

Identities follow open_clip: ``open_clip:ARCH/TAG`` (e.g. ``open_clip:ViT-B-32/openai``),
``open_clip:hf-hub:ORG/NAME``, or ``open_clip:ARCH`` for a seeded random init
(architecture only). The paper's four encoders (arXiv 2407.15731) are registered under
short names.

Weights without internet, three ways:

* a warm HF cache: pretrained tags and ``hf-hub:`` models are read from the HF hub cache
  (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``) where open_clip's own download
  put them; set ``HF_HUB_OFFLINE=1`` so a miss fails at once instead of after ~45 s of retries;
* ``open_clip:ARCH/FILE``: a checkpoint file (absolute, relative or ``~`` path) for
  architecture ARCH, with open_clip's default preprocessing for ARCH (for OpenAI weights
  use the ``-quickgelu`` architecture);
* ``open_clip:local-dir:FOLDER``: an open_clip folder (``open_clip_config.json``, the
  weights, the tokenizer files if it has an HF tokenizer), e.g. ``hf download REPO
  --local-dir FOLDER``; SigLIP needs this form (its config carries its preprocessing and
  its HF tokenizer).

A local file or folder is identified by its bytes (the sha256 of the file, or of the
folder's files), not its path: the same bytes elsewhere give the same cache keys.
``locate`` says where the weights are, or what is missing, without downloading.
A tag trained with QuickGELU (OpenAI's) is built with QuickGELU, as its weights need.
SigLIP keeps its ``logit_bias``. CoCa keeps only its contrastive towers (its captioning
decoder is dropped): ``encode_image`` / ``encode_text`` return its contrastive latents.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from estimators.errors import InvalidInput
from estimators.registry import UnknownName, did_you_mean
from tasks.torchvision_compat import import_open_clip

from .base import Encoder, EncoderUnavailable, file_sha256, package_versions, register_builder, register_prefix

PREFIX = "open_clip:"  # the id scheme this module registers
HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
CONFIG_NAME = "open_clip_config.json"
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's order
URL_CACHE = Path("~/.cache/clip")  # open_clip's cache for URL-only tags
CONFIGS = Path(__file__).parent / "configs"  # this project's architectures (tb-smoke), registered with open_clip

#: registry name -> (open_clip architecture or hf-hub name, pretrained tag)
PAPER_ENCODERS = {
    "vitb32-openai": ("ViT-B-32", "openai"),
    "vitb16-siglip-webli": ("hf-hub:timm/ViT-B-16-SigLIP", None),
    "coca-vitb32-laion2b": ("coca_ViT-B-32", "laion2b_s13b_b90k"),
    "eva02-b16-merged2b": ("EVA02-B-16", "merged2b_s8b_b131k"),
}


@dataclass(frozen=True)
class Weights:
    """Where an open_clip encoder's weights come from, found without downloading anything.

    ``kind``: ``random`` (seeded init), ``file`` (a local checkpoint), ``dir`` (a
    ``local-dir:`` folder), ``hub`` (the HF hub cache) or ``url`` (open_clip's URL cache).
    ``found``: the files it will read; ``missing``: what is not here (empty when ready)."""

    kind: str
    found: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def present(self) -> bool:
        return not self.missing


def project_open_clip():
    """open_clip, with this project's architecture configs (``configs/*.json``) registered."""
    open_clip = import_open_clip()
    if not all(p.stem in open_clip.list_models() for p in CONFIGS.glob("*.json")):
        open_clip.add_model_config(CONFIGS)
    return open_clip


def locate(arch: str, pretrained: str | None = None) -> Weights:
    """Where open_clip will read ``(arch, pretrained)`` from, and what of it is missing here."""
    open_clip = project_open_clip()
    if arch.startswith(HF_HUB_PREFIX):
        return _locate_hub_model(arch[len(HF_HUB_PREFIX):])
    if arch.startswith(LOCAL_DIR_PREFIX):
        return _locate_dir(_local_path(arch[len(LOCAL_DIR_PREFIX):]))
    if arch not in open_clip.list_models():
        raise UnknownName(did_you_mean("open_clip architecture", arch, open_clip.list_models()))
    if pretrained is None:
        return Weights("random")
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        path = _local_path(pretrained)
        if path.is_file():
            return Weights("file", found=(str(path),))
        if not _looks_like_path(pretrained):
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise InvalidInput(f"open_clip {arch} has no pretrained tag {pretrained!r} and no such file; "
                               f"known tags: {', '.join(tags) or 'none'}")
        return Weights("file", missing=(f"checkpoint file {path}",))
    tokenizer = _tokenizer_files(open_clip.get_model_config(arch) or {})
    if cfg.get("hf_hub"):  # open_clip prefers the hub over a URL
        repo, filename = os.path.split(cfg["hf_hub"])
        return _weights("hub", [_hub_file(repo, _hub_candidates(filename)), *tokenizer])
    path = URL_CACHE.expanduser() / os.path.basename(cfg.get("url", ""))
    return _weights("url", [(str(path) if path.is_file() else None, str(path)), *tokenizer])


def open_clip_encoder(arch: str, pretrained: str | None = None, device: str = "cpu",
                      seed: int = 0) -> Encoder:
    """Wrap ``open_clip.create_model_and_transforms(arch, pretrained)``.

    ``pretrained=None`` (and no ``hf-hub:`` / ``local-dir:`` prefix) gives a random init
    drawn from ``seed`` without touching the global RNG state.
    """
    open_clip = project_open_clip()
    weights = locate(arch, pretrained)
    quick_gelu = False
    if weights.kind in ("file", "dir"):
        if not weights.present:
            raise EncoderUnavailable(f"open_clip:{arch}: not found: {'; '.join(weights.missing)}")
        digest = file_sha256(weights.found[0]) if weights.kind == "file" else _folder_sha256(weights.found[0])
        name = "local-dir" if weights.kind == "dir" else arch
        encoder_id, weights_tag = f"open_clip:{name}/sha256:{digest[:12]}", f"sha256:{digest}"
        if weights.kind == "file":
            pretrained = weights.found[0]
        else:
            arch = LOCAL_DIR_PREFIX + weights.found[0]
    elif arch.startswith(HF_HUB_PREFIX):
        encoder_id, weights_tag = f"open_clip:{arch}", arch
    elif pretrained is None:
        weights_tag = f"random-init-seed{seed}"
        encoder_id = f"open_clip:{arch}/{weights_tag}"
    else:
        quick_gelu = bool(open_clip.get_pretrained_cfg(arch, pretrained).get("quick_gelu"))
        encoder_id, weights_tag = f"open_clip:{arch}/{pretrained}", pretrained + ("+quick_gelu" if quick_gelu else "")

    downloads = weights.kind in ("hub", "url")
    # quiet: a download's error logging (we raise one line instead), or random init's "No pretrained
    # weights loaded" warning, which every worker of every smoke run printed across the progress bar
    with torch.random.fork_rng(devices=[]), _quiet(downloads or pretrained is None):
        try:  # first: it fails fastest where a download is needed (hf-hub, SigLIP's HF tokenizer)
            tokenizer = open_clip.get_tokenizer(arch)
        except (RuntimeError, OSError) as exc:
            what = "the model config" if arch.startswith(HF_HUB_PREFIX) else "the tokenizer"
            raise EncoderUnavailable(_needs_download(encoder_id, what, exc)) from None
        torch.manual_seed(seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=device, force_quick_gelu=quick_gelu)
        except Exception as exc:
            if weights.kind in ("file", "dir"):  # a damaged or foreign checkpoint: one line, not torch.load's page
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise InvalidInput(f"{encoder_id}: cannot load the checkpoint {weights.found[0]} as {arch} "
                                   f"({type(exc).__name__}: {first})") from None
            if not downloads or not isinstance(exc, (RuntimeError, OSError)):
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


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``ARCH/TAG``, ``ARCH/FILE``, ``ARCH`` (random init), ``hf-hub:ORG/NAME`` or
    ``local-dir:FOLDER`` -> (open_clip model name, pretrained tag or file)."""
    if spec.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        return spec, None
    arch, _, tag = spec.partition("/")
    return arch, tag or None


@register_prefix(PREFIX)
def from_spec(spec: str, device: str = "cpu") -> Encoder:
    """any open_clip model: open_clip:ARCH/TAG, open_clip:hf-hub:ORG/NAME, open_clip:ARCH/FILE, open_clip:local-dir:DIR

    Builds from the spec after the prefix (see ``parse_spec``)."""
    return open_clip_encoder(*parse_spec(spec), device=device)


def _local_path(text: str) -> Path:
    return Path(os.path.expanduser(text)).absolute()


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith(("~", ".")) or text.endswith(CHECKPOINT_SUFFIXES)


def _hub_file(repo: str, names, absent_ok: bool = False) -> tuple[str | None, str]:
    """(cached path of the first of ``names`` in the HF cache, or None; what was looked for).
    ``absent_ok``: a file the cache records as absent upstream (``.no_exist``) counts as found."""
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return found, name
        if found is not None and absent_ok:  # huggingface_hub's _CACHED_NO_EXIST
            return f"{repo}: no {name} upstream (cached answer)", name
    return None, f"{repo}: {' or '.join(names)} (HF cache)"


def _tokenizer_files(model_cfg: dict) -> list[tuple[str | None, str]]:
    """The HF files an open_clip tokenizer / text tower reads beyond open_clip's bundled BPE.
    transformers >= 5 resolves a tokenizer's model ``config.json`` first (present or known absent)."""
    text = model_cfg.get("text_cfg", {})
    found = []
    if text.get("hf_tokenizer_name"):
        found.append(_hub_file(text["hf_tokenizer_name"], ("tokenizer_config.json",)))
        major = package_versions("transformers")["transformers"].split(".")[0]
        if major.isdigit() and int(major) >= 5:
            found.append(_hub_file(text["hf_tokenizer_name"], ("config.json",), absent_ok=True))
    if text.get("hf_model_name"):
        found.append(_hub_file(text["hf_model_name"], ("config.json",)))
    return found


def _hub_candidates(filename: str) -> tuple[str, ...]:
    """The files open_clip tries for a hub tag, in order: the safetensors twin first."""
    if not filename or filename == HUB_WEIGHTS[1]:
        return HUB_WEIGHTS
    if filename.endswith((".bin", ".pth")):
        return filename[:-4] + ".safetensors", filename
    return (filename,)


def _weights(kind: str, lookups: list[tuple[str | None, str]]) -> Weights:
    """``lookups``: (path found or None, what was looked for) pairs."""
    return Weights(kind, tuple(p for p, _ in lookups if p), tuple(w for p, w in lookups if not p))


def _locate_hub_model(repo: str) -> Weights:
    config = _hub_file(repo, (CONFIG_NAME,))
    tokenizer = [_hub_file(repo, ("tokenizer_config.json",))]  # open_clip's fallback without a config
    if config[0]:
        tokenizer = _tokenizer_files(json.loads(Path(config[0]).read_text()).get("model_cfg", {}))
    return _weights("hub", [_hub_file(repo, HUB_WEIGHTS), config, *tokenizer])


def _locate_dir(folder: Path) -> Weights:
    """A ``local-dir:`` folder: its config, a checkpoint open_clip will pick, its HF tokenizer files."""
    config = folder / CONFIG_NAME
    if not config.is_file():
        return Weights("dir", missing=(f"{config} (an open_clip folder: config, weights, tokenizer files)",))
    checkpoints = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth")]
    text = json.loads(config.read_text()).get("model_cfg", {}).get("text_cfg", {})
    tokenizer = folder / "tokenizer_config.json"
    missing = ([] if checkpoints else [f"a checkpoint (*.safetensors, *.bin, *.pth) in {folder}"]) + \
              ([str(tokenizer)] if text.get("hf_tokenizer_name") and not tokenizer.is_file() else [])
    return Weights("dir", found=(str(folder),), missing=tuple(missing))


def _folder_sha256(folder: str) -> str:
    """sha256 over the names and bytes of a folder's visible top-level files (weights, config, tokenizer)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        h.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return h.hexdigest()


def _needs_download(encoder_id: str, what: str, exc: Exception) -> str:
    return (f"{encoder_id}: could not download {what} and found no local copy ({type(exc).__name__}); "
            f"this encoder needs internet once (`python -m benchmark check --fetch`), a warm HF cache "
            f"(HF_HOME) or a local copy (open_clip:ARCH/FILE, open_clip:local-dir:FOLDER); "
            f"with HF_HUB_OFFLINE=1 it fails at once")


@contextlib.contextmanager
def _quiet(active: bool):
    """Silence open_clip's and huggingface_hub's logging (up to errors) while ``active``."""
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
