"""Rehearsal of the paper suite, offline: its four architectures through embed, zero-shot
accuracy, every estimator and one short fine-tuning cell per method.

The encoders are ``encoders.rehearsal``'s: ViT-B-32, ViT-B-16-SigLIP, coca_ViT-B-32 and
EVA02-B-16 with random weights, shrunk in depth, width and image size only (the tests below
check that the configs differ from open_clip's only in sizes and that the built modules,
attention implementations included, are the full-size ones). SigLIP runs with a stand-in
tokenizer (open_clip's bundled CLIP BPE, vocabulary 49,408): its real one needs a download.
The task is scikit-learn's digits (ships in the wheel). The full-size models run behind
``-m slow``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.finetune.loop import Examples, finetune, seed_everything, zero_shot_logits
from benchmark.finetune.methods import get_method
from benchmark.finetune.outcomes import run_outcome
from benchmark.finetune.tuned import trainable, trainable_counts
from benchmark.scoring import score_all
from benchmark.suites import get_suite
from encoders import get_encoder
from encoders.extract import embed
from encoders.rehearsal import REHEARSAL, TIMM_TRUNKS, register_configs, rehearsal_encoder
from estimators import list_estimators
from tasks import get_task

from .method_checks import assert_only_claimed_moved, expected_trainable, tower_counts

NAMES = list(REHEARSAL)
METHODS = ["full", "bitfit", "attention", "lora", "clip_adapter"]
N_TRAIN, N_TEST = 40, 20
CONFIG = dataclasses.replace(get_suite("smoke").finetune, lr=1e-2, epochs=1, batch_size=8, max_steps=2,
                             n_train=N_TRAIN, n_test=N_TEST)
SIZES = {"embed_dim", "image_size", "width", "heads", "layers", "head_width", "attn_pooler_heads"}
TIMM_SIZES = {"img_size", "embed_dim", "depth", "num_heads"}
EMBED_DIM = 64  # every rehearsal config's embed_dim


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("rehearsal-cache")


@pytest.fixture(scope="module")
def built():
    return {name: get_encoder(name) for name in NAMES}


@pytest.fixture(scope="module")
def embedded(built, cache):
    """name -> (train, test) EmbeddingSets of digits (canonical template, as the paper suite)."""
    task = get_task("digits")
    return {name: tuple(embed(enc, task, split, n=n, prompts="single", cache_dir=cache, device="cpu",
                              progress=False) for split, n in (("train", N_TRAIN), ("test", N_TEST)))
            for name, enc in built.items()}


@pytest.fixture(scope="module")
def digits():
    sample = get_task("digits").load("train", n=N_TRAIN, seed=0)
    return sample.images, np.asarray(sample.labels)


def _layout(model: torch.nn.Module) -> set[tuple[str, str]]:
    """(module or parameter name with block indices as #, class or parameter rank) for the whole model."""
    def norm(name):
        return re.sub(r"\.\d+(?=\.|$)", ".#", name)

    modules = {(norm(n), f"{type(m).__module__}.{type(m).__qualname__}") for n, m in model.named_modules()}
    return modules | {(norm(n), f"parameter, {p.dim()}-d") for n, p in model.named_parameters()}


# -- the shrunk architectures are the real ones ---------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_configs_differ_from_the_paper_ones_in_sizes_only(name):
    open_clip = register_configs()
    arch, shrunk_name = REHEARSAL[name]
    real, shrunk = open_clip.get_model_config(arch), open_clip.get_model_config(shrunk_name)
    trunks = json.loads(TIMM_TRUNKS.read_text())

    def leaves(cfg, prefix=()):
        for k, v in cfg.items():
            yield from leaves(v, prefix + (k,)) if isinstance(v, dict) else [(prefix + (k,), v)]

    real_leaves, shrunk_leaves = dict(leaves(real)), dict(leaves(shrunk))
    for path in set(real_leaves) | set(shrunk_leaves):
        a, b = real_leaves.get(path), shrunk_leaves.get(path)
        if a == b or path[-1] in SIZES:
            continue
        if path[-1] == "timm_model_name":  # a shrunk trunk of the same timm entrypoint
            assert trunks[b]["base"] == a and set(trunks[b]["shrink"]) <= TIMM_SIZES
            assert trunks[b]["shrink"]["img_size"] == shrunk["vision_cfg"]["image_size"]
            continue
        # SigLIP's stand-in tokenizer: no HF tokenizer, a vocabulary the size of open_clip's BPE
        assert arch == "ViT-B-16-SigLIP" and path in {("text_cfg", "hf_tokenizer_name"), ("text_cfg", "vocab_size")}
    full_siglip = open_clip.get_model_config("tb-fullsize-ViT-B-16-sigmoid")
    real_siglip = open_clip.get_model_config("ViT-B-16-SigLIP")
    del real_siglip["text_cfg"]["hf_tokenizer_name"]
    assert full_siglip == {**real_siglip, "text_cfg": {**real_siglip["text_cfg"], "vocab_size": 49408}}


@pytest.mark.parametrize("name", NAMES)
def test_shrunk_models_have_the_full_size_layout(name):
    """Same module classes under the same names (block indices aside), same parameter names:
    model class, tower classes, attention implementation (open_clip MultiheadAttention, timm
    Attention with fused qkv, timm EvaAttention with q/k/v_proj and rope), pooling heads.
    The full-size model is built on the meta device (no memory, no init cost)."""
    open_clip = register_configs()
    arch, shrunk_name = REHEARSAL[name]
    with torch.device("meta"):
        full = open_clip.create_model(arch, device="meta")
        shrunk = open_clip.create_model(shrunk_name, device="meta")
    assert _layout(shrunk) == _layout(full)
    full_blocks = sum(1 for n, _ in full.named_modules() if re.search(r"\.(resblocks|blocks)\.\d+$", n))
    shrunk_blocks = sum(1 for n, _ in shrunk.named_modules() if re.search(r"\.(resblocks|blocks)\.\d+$", n))
    assert shrunk_blocks < full_blocks


def test_siglip_stand_in_tokenizer_is_offline_and_fits_the_vocabulary(built):
    enc = built["rehearsal-siglip"]
    tokens = enc.tokenize(["a photo of the number: 7.", "Ünïcode   spaces"])
    assert tokens.shape == (2, 64) and int(tokens.max()) < enc.model.text.token_embedding.num_embeddings
    assert "siglip" not in REHEARSAL["rehearsal-siglip"][1].lower()  # open_clip would pick its T5 tokenizer


# -- embed, zero-shot accuracy, estimators --------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_embeddings_match_the_model_run_by_hand(name, built, embedded, digits):
    enc, (train, _) = built[name], embedded[name]
    images, labels = digits
    with torch.no_grad():
        pixels = torch.stack([enc.preprocess(im) for im in images])
        image = F.normalize(enc.model.encode_image(pixels), dim=-1).numpy()
        tokens = enc.tokenize(get_task("digits").prompts(0))  # the canonical template
        text = F.normalize(enc.model.encode_text(tokens), dim=-1).numpy()
    assert train.image.shape == (N_TRAIN, EMBED_DIM) and train.text.shape == (10, EMBED_DIM)
    np.testing.assert_array_equal(train.labels, labels)
    np.testing.assert_allclose(train.image, image, atol=1e-5)
    np.testing.assert_allclose(train.text, text, atol=1e-5)
    assert np.isfinite(train.image).all() and np.isfinite(train.text).all()


@pytest.mark.parametrize("name", NAMES)
def test_zero_shot_logits_use_the_models_scale_and_bias(name, built, embedded):
    """SigLIP: ``exp(logit_scale) * cos + logit_bias`` from the model's own parameters, a
    per-class sigmoid whose argmax is the zero-shot prediction."""
    enc, (_, test) = built[name], embedded[name]
    scale = float(enc.model.logit_scale.detach().exp())
    bias = getattr(enc.model, "logit_bias", None)
    assert (bias is not None) == (name == "rehearsal-siglip")
    bias = 0.0 if bias is None else float(bias.detach())
    assert test.logit_scale == pytest.approx(scale) and (test.logit_bias or 0.0) == pytest.approx(bias)
    logits = scale * test.image.astype(np.float64) @ test.text.astype(np.float64).T + bias
    np.testing.assert_allclose(test.zero_shot_logits(), logits, rtol=1e-12)
    sigmoid = 1 / (1 + np.exp(-logits))
    expected = float(np.mean(sigmoid.argmax(axis=1) == test.labels))
    scores, _ = score_all({name: test}, ["zero_shot_acc"])
    assert scores[0].score == pytest.approx(expected)
    torch_logits = zero_shot_logits(enc, torch.tensor(test.image), torch.tensor(test.text))  # fine-tuning's
    np.testing.assert_allclose(torch_logits.double().numpy(), logits, rtol=1e-5, atol=1e-5)
    if name == "rehearsal-siglip":  # SigLIP's init_logit_bias, carried into the EmbeddingSet
        assert test.logit_bias == -10.0 and test.meta["logit_bias"] == -10.0


def test_every_estimator_scores_every_architecture(embedded):
    pool = {name: train for name, (train, _) in embedded.items()}
    scores, missed = score_all(pool, list_estimators())
    assert missed == []
    assert {(s.key, s.estimator) for s in scores} == {(k, e) for k in pool for e in list_estimators()}
    assert all(math.isfinite(s.score) for s in scores)


# -- fine-tuning: what trains, what stays frozen --------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", NAMES)
def test_method_trains_exactly_its_parameters(name, method, built, embedded, digits):
    """Trained tensors are exactly the expected ones, in both towers, and all moved; every
    other parameter (LoRA's base weights included) is bit-identical after training."""
    encoder = dataclasses.replace(built[name], model=copy.deepcopy(built[name].model))
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    expected = expected_trainable(encoder.model, method, EMBED_DIM)
    seed_everything(0)
    tuned = get_method(method).prepare(encoder, CONFIG)
    claimed = {n: p.detach().clone() for n, p in trainable(tuned).items()}
    assert {n: tuple(p.shape) for n, p in claimed.items()} == expected
    counts = tower_counts(expected)
    assert counts["image"] > 0 and counts["text"] > 0

    images, labels = digits
    examples = Examples(labels, embedded[name][0].image, images)
    report = finetune(tuned, encoder, get_task("digits"), examples, CONFIG, progress=False)
    assert report["trainable"] == counts and report["unused"] == [] and report["steps"] == CONFIG.max_steps
    assert all(math.isfinite(h["loss"]) for h in report["history"])
    assert_only_claimed_moved(tuned, before, claimed)


@pytest.mark.parametrize("name", NAMES)
def test_one_cell_per_method_records_what_trained(name, built, cache, tmp_path):
    model = built[name].model
    for method in METHODS:
        record = run_outcome(name, method, "digits", 0, ["digits"], CONFIG, tmp_path, cache_dir=cache,
                             device="cpu", progress=False)
        assert record["method"] == method and record["encoder"] == name
        assert record["trainable"] == tower_counts(expected_trainable(model, method, EMBED_DIM))
        assert record["unused_parameters"] == [] and record["training"]["steps"] == CONFIG.max_steps
        for acc in (record["acc_zs"]["digits"], record["acc_ft"]["digits"], record["id_gain"]):
            assert math.isfinite(acc)
        assert 0 <= record["acc_ft"]["digits"] <= 1
        assert record["training"]["image_path"] == ("cached" if method == "clip_adapter" else "backbone")


# -- full size ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("arch", [arch for arch, _ in REHEARSAL.values()])
def test_full_size_embeds_and_takes_a_lora_step(arch, tmp_path, capsys):
    """Full-size random-init paper architectures (224 px, 12 + 12 blocks): embedding and one
    LoRA step. Per tower of width w, ``attention`` trains 12 x 3 w^2 weights and LoRA (rank 4,
    Q and V) 12 x 2 x (4 w + w 4): for ViT-B-32 21.2 M / 147,456 image and 9.4 M / 98,304 text.
    Prints wall and CPU seconds per phase."""
    clock = [(time.perf_counter(), time.process_time())]
    enc = rehearsal_encoder(arch, full_size=True)
    clock.append((time.perf_counter(), time.process_time()))
    task = get_task("digits")
    emb = embed(enc, task, "train", n=20, prompts="single", cache_dir=tmp_path, device="cpu", progress=False)
    clock.append((time.perf_counter(), time.process_time()))
    assert emb.image.shape[0] == 20 and np.isfinite(emb.image).all()

    widths = {"image": 768, "text": 768 if arch == "ViT-B-16-SigLIP" else 512}
    config = dataclasses.replace(CONFIG, batch_size=8, max_steps=1, n_train=20)
    assert trainable_counts(get_method("attention").prepare(enc, config)) == {t: 12 * 3 * w * w
                                                                             for t, w in widths.items()}
    seed_everything(0)
    tuned = get_method("lora").prepare(enc, config)
    sample = task.load("train", n=20, seed=0)
    examples = Examples(np.asarray(sample.labels), emb.image, sample.images)
    report = finetune(tuned, enc, task, examples, config, progress=False)
    clock.append((time.perf_counter(), time.process_time()))
    assert report["trainable"] == {t: 12 * 2 * 8 * w for t, w in widths.items()}
    assert report["steps"] == 1 and math.isfinite(report["history"][0]["loss"])
    (build, embedding, step), cpu = np.diff(np.array(clock), axis=0).T
    with capsys.disabled():
        print(f"\n{arch}: build {build:.1f} s, embed 20 images {embedding:.1f} s ({20 / embedding:.1f} img/s), "
              f"one LoRA step (batch 8) + validation on 2 images {step:.1f} s; "
              f"CPU s: {cpu[0]:.1f}, {cpu[1]:.1f}, {cpu[2]:.1f} ({torch.get_num_threads()} threads)")
