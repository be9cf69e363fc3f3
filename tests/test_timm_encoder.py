"""Image-only encoders (``timm:``), offline: timm's tiny ``test_resnet`` (470k parameters, 160 px)
with seeded random weights through embed (cache written and re-read), score (label-only
estimators score, text estimators are not scored with their reason, LEEP and NCE use the
ImageNet head's ``source_logits``) and fine-tuning cells (``linear`` and ``full``).

Numbers are checked against independent computations: the embeddings and logits against
timm's own forward pass, LEEP and NCE against brute-force loops over the formulas of their
papers. Digits ships in scikit-learn; MNIST (an out-of-domain task) comes from the offline
data and is left out where absent.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.evaluation.deltas import exact_deltas
from benchmark.finetune.loop import Examples, finetune, seed_everything
from benchmark.finetune.methods import NotApplicable, get_method, list_methods
from benchmark.finetune.outcomes import run_outcome
from benchmark.finetune.tuned import trainable
from benchmark.scoring import score_all
from benchmark.store.results import read_cell
from benchmark.suites import get_suite
from encoders import EncoderUnavailable, get_encoder
from encoders.cache import ArrayCache
from encoders.extract import cache_spec, embed
from encoders.timm_encoder import import_timm, timm_encoder
from estimators import EmbeddingSet, estimator_class, list_estimators
from estimators.errors import InvalidInput
from estimators.registry import UnknownName
from tasks import get_task

from .conftest import eval_tasks
from .method_checks import assert_only_claimed_moved, expected_trainable

NAME = "timm:test_resnet"
N_TRAIN, N_TEST = 40, 20
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFERBENCH_DATA") or REPO.parent / "shared" / "data")
CONFIG = dataclasses.replace(get_suite("smoke").finetune, lr=1e-2, epochs=1, batch_size=8, max_steps=2,
                             n_train=N_TRAIN, n_test=N_TEST, n_ood=10)


@pytest.fixture(scope="module")
def encoder():
    return get_encoder(NAME)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("timm-cache")


@pytest.fixture(scope="module")
def train(encoder, cache):
    return embed(encoder, get_task("digits"), "train", n=N_TRAIN, prompts="single", cache_dir=cache, device="cpu",
                 progress=False)


# -- the encoder ---------------------------------------------------------------------------
def test_a_timm_id_builds_an_image_only_encoder_with_timms_preprocessing(encoder):
    from timm.data import resolve_data_config

    assert encoder.id == "timm:test_resnet/random-init-seed0" and encoder.weights_tag == "random-init-seed0"
    assert not encoder.has_text and encoder.tokenize is None and encoder.logit_scale is None
    assert not hasattr(encoder.model, "encode_text") and not encoder.model.training
    timm = import_timm()
    reference = resolve_data_config({}, model=timm.create_model("test_resnet"))
    cfg = encoder.preprocess_cfg()
    assert {k: cfg[k] for k in reference} == {k: list(v) if isinstance(v, tuple) else v for k, v in reference.items()}
    assert cfg["size"] == [160, 160] and cfg["library"] == "timm"
    digit = get_task("digits").load("train", n=10, seed=0).images[0]  # a grayscale PIL image
    assert encoder.preprocess(digit).shape == (3, 160, 160)


def test_random_init_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = get_encoder(NAME), get_encoder(NAME)
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_unknown_architecture_and_tag_are_one_clear_line():
    with pytest.raises(UnknownName, match=r"did you mean .*'resnet50'") as info:
        get_encoder("timm:resnet5O")
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidInput, match="no pretrained tag 'nosuchtag'.*known tags: .*a1_in1k"):
        get_encoder("timm:resnet18.nosuchtag")


@pytest.mark.parametrize("name", ["timm:test_resnet.r160_in1k", "timm:resnet18.a1_in1k"])
def test_missing_pretrained_weights_offline_are_one_clear_line(name, offline_hub):
    start = time.monotonic()
    with pytest.raises(EncoderUnavailable) as info:
        get_encoder(name)
    message = str(info.value)
    assert message.startswith(f"{name}: could not download its pretrained weights")
    assert "\n" not in message and "internet" in message and "HF_HUB_OFFLINE" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert time.monotonic() - start < 30


def test_a_local_checkpoint_is_loaded_and_identified_by_its_bytes(tmp_path):
    from safetensors.torch import save_file

    source = timm_encoder("test_resnet", seed=1)  # another init than the seed-0 default
    path = tmp_path / "ckpt.safetensors"
    save_file(source.model.visual.state_dict(), str(path))
    loaded = get_encoder(f"timm:test_resnet/{path}")
    pixels = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model.encode_image(pixels), source.model.eval().encode_image(pixels))
        assert not torch.equal(get_encoder(NAME).model.encode_image(pixels), loaded.model.encode_image(pixels))
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.id == f"timm:test_resnet/sha256:{digest[:12]}" and loaded.weights_tag == f"sha256:{digest}"
    copy = tmp_path / "elsewhere.safetensors"
    copy.write_bytes(path.read_bytes())
    again = get_encoder(f"timm:test_resnet/{copy}")
    spec = (get_task("digits"), "test", 10, 0, "single")
    assert ArrayCache(tmp_path).path(cache_spec(again, *spec)) == ArrayCache(tmp_path).path(cache_spec(loaded, *spec))
    with pytest.raises(EncoderUnavailable, match="not found: checkpoint file"):
        get_encoder(f"timm:test_resnet/{tmp_path / 'absent.safetensors'}")
    with pytest.raises(InvalidInput, match="is not a checkpoint of this architecture"):
        get_encoder(f"timm:test_vit/{path}")


# -- embeddings ------------------------------------------------------------------------------
def test_embeddings_are_normalised_pre_logits_with_the_imagenet_logits_and_no_text(encoder, train):
    sample = get_task("digits").load("train", n=N_TRAIN, seed=0)
    trunk = import_timm().create_model("test_resnet")
    trunk.load_state_dict(encoder.model.visual.state_dict())
    trunk.eval()
    pixels = torch.stack([encoder.preprocess(im) for im in sample.images])
    with torch.no_grad():
        pre = trunk.forward_head(trunk.forward_features(pixels), pre_logits=True).double().numpy()
        logits = trunk(pixels).numpy()  # timm's own classifier output
    np.testing.assert_allclose(train.image, pre / np.linalg.norm(pre, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(train.source_logits, logits, rtol=1e-4, atol=1e-4)
    assert train.text is None and train.logit_scale is None and train.meta["image_only"]
    assert train.source_logits.shape == (N_TRAIN, 1000) and train.n_classes == 10
    assert np.array_equal(train.labels, sample.labels)


def test_the_cache_holds_the_source_logits_and_is_reread(encoder, train, cache, monkeypatch):
    spec = cache_spec(encoder, get_task("digits"), "train", N_TRAIN, 0, "single")
    assert spec["image_only"] and "templates" not in spec
    arrays, meta = ArrayCache(cache).get(spec)
    assert set(arrays) == {"image", "labels", "source_logits"} and meta["logit_scale"] is None

    def no_forward(*args, **kwargs):
        raise AssertionError("a cached entry must not run the model")

    monkeypatch.setattr("encoders.extract.encode_images", no_forward)
    again = embed(encoder, get_task("digits"), "train", n=N_TRAIN, prompts="ensemble", cache_dir=cache,
                  device="cpu", progress=False)  # prompts change nothing for an image-only encoder
    assert np.array_equal(again.image, train.image) and np.array_equal(again.source_logits, train.source_logits)


def test_a_dual_encoders_cache_spec_is_unchanged():
    spec = cache_spec(get_encoder("smoke"), get_task("digits"), "test", 10, 0, "single")
    assert "templates" in spec and "image_only" not in spec


# -- scores ------------------------------------------------------------------------------------
def brute_force_leep(logits: np.ndarray, labels: np.ndarray) -> float:
    """Nguyen et al. 2020, eq. (1)-(2), with loops: theta = softmax of the source head."""
    theta = [np.exp(row - row.max()) / np.exp(row - row.max()).sum() for row in logits.astype(np.float64)]
    n, z_count, ys = len(labels), logits.shape[1], sorted(set(labels.tolist()))
    joint = {(y, z): sum(theta[i][z] for i in range(n) if labels[i] == y) / n for y in ys for z in range(z_count)}
    marginal = {z: sum(joint[y, z] for y in ys) for z in range(z_count)}
    total = 0.0
    for i in range(n):
        total += math.log(sum(joint[labels[i], z] / marginal[z] * theta[i][z] for z in range(z_count)))
    return total / n


def brute_force_nce(logits: np.ndarray, labels: np.ndarray) -> float:
    """Tran et al. 2019: -H(Y | Z) with Z the source head's argmax, from counts."""
    z = [int(np.argmax(row)) for row in logits]
    pairs, singles, n = Counter(zip(labels.tolist(), z)), Counter(z), len(z)
    return sum(c / n * math.log((c / n) / (singles[zz] / n)) for (_, zz), c in pairs.items())


def test_label_only_estimators_score_text_ones_are_not_scored_and_leep_nce_use_the_imagenet_head(train):
    names = [n for n in list_estimators() if not estimator_class(n).pool_relative]
    scores, missed = score_all({NAME: train}, names, check_sizes=False)
    scored = {s.estimator: s.score for s in scores}
    reasons = {s.estimator: s.reason for s in missed}
    assert {s.status for s in missed} == {"skipped"}, missed
    text_only = {n for n in names if set(estimator_class(n).needs) & {"text", "logits"}}
    assert text_only and set(reasons) == text_only
    assert {"iimm", "zero_shot_acc", "modality_gap"} <= text_only
    assert all("image-only" in r and "text features" in r for r in reasons.values())
    assert {"logme", "hscore", "knn", "linear_probe", "leep", "nce", "iimm_intra"} <= set(scored)
    assert scored["leep"] == pytest.approx(brute_force_leep(train.source_logits, train.labels), rel=1e-9)
    assert scored["nce"] == pytest.approx(brute_force_nce(train.source_logits, train.labels), rel=1e-9)


def test_source_logits_take_precedence_over_the_zero_shot_classifier_in_leep_and_nce():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    logits = rng.normal(size=(30, 7)) + 3 * np.eye(7)[labels * 2]
    both = EmbeddingSet.create(rng.normal(size=(30, 8)), labels, text=rng.normal(size=(3, 8)), logit_scale=10.0,
                               source_logits=logits)
    zero_shot = EmbeddingSet.create(both.image, labels, text=both.text, logit_scale=10.0)
    stored = both.source_logits  # float32, as the cache keeps them
    assert estimator_class("leep")().score(both) == pytest.approx(brute_force_leep(stored, labels), rel=1e-9)
    assert estimator_class("nce")().score(both) == pytest.approx(brute_force_nce(stored, labels), rel=1e-9)
    assert estimator_class("leep")().score(zero_shot) == pytest.approx(
        brute_force_leep(zero_shot.zero_shot_logits(), labels), rel=1e-9)
    with pytest.raises(InvalidInput, match="source logits must have shape"):
        EmbeddingSet.create(both.image, labels, source_logits=logits[:5])


# -- fine-tuning ---------------------------------------------------------------------------------
def _prepared(name: str, task="digits"):
    encoder = get_encoder(NAME)
    method = get_method(name)
    seed_everything(0)
    return encoder, method.prepare(encoder, CONFIG.for_method(method), get_task(task))


def test_linear_trains_only_a_zero_initialised_head_on_the_image_embedding(train):
    encoder, tuned = _prepared("linear")
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    claimed = {n: p.detach().clone() for n, p in trainable(tuned).items()}
    expected = expected_trainable(encoder.model, "linear", encoder.model.embed_dim, n_classes=10, image_only=True)
    assert {n: tuple(v.shape) for n, v in claimed.items()} == expected == {"classifier.weight": (10, 96),
                                                                           "classifier.bias": (10,)}
    assert all(not v.any() for v in claimed.values())  # zero init
    examples = Examples(train.labels, np.array(train.image))
    report = finetune(tuned, encoder, get_task("digits"), examples, CONFIG, progress=False)
    assert report["image_path"] == "cached" and report["trainable"] == {"image": 970, "text": 0}
    assert_only_claimed_moved(tuned, before, claimed)


def test_full_trains_the_image_tower_and_the_head_not_the_imagenet_classifier():
    encoder, tuned = _prepared("full")
    sample = get_task("digits").load("train", n=N_TRAIN, seed=0)
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    claimed = {n: p.detach().clone() for n, p in trainable(tuned).items()}
    report = finetune(tuned, encoder, get_task("digits"), Examples(np.asarray(sample.labels), None, sample.images),
                      CONFIG, progress=False)
    assert report["image_path"] == "backbone" and report["steps"] == 2
    assert report["unused"] == ["model.visual.fc.weight", "model.visual.fc.bias"]  # the ImageNet head
    expected = expected_trainable(encoder.model, "full", encoder.model.embed_dim, n_classes=10, image_only=True)
    used = {n: v for n, v in claimed.items() if n not in report["unused"]}
    assert {n: tuple(v.shape) for n, v in used.items()} == expected
    assert report["trainable"]["text"] == 0 and report["trainable"]["image"] == sum(v.numel() for v in used.values())
    changed = {n for n, p in tuned.named_parameters() if n in used and not torch.equal(p, used[n])}
    assert "classifier.weight" in changed and any(n.startswith("model.visual.layer") for n in changed)
    assert all(torch.equal(tuned.get_parameter(n), before[n.removeprefix("model.")]) for n in report["unused"])


def test_methods_that_need_text_or_find_nothing_say_so():
    with pytest.raises(NotApplicable, match="'clip_adapter' does not apply to encoder timm:test_resnet.*image-only"):
        _prepared("clip_adapter")  # NotApplicable: a grid runner skips the cell with this reason
    with pytest.raises(NotApplicable, match="'attention' would train nothing .* its image tower has none"):
        _prepared("attention")
    _, bitfit = _prepared("bitfit")
    assert {n for n in trainable(bitfit)} >= {"classifier.weight", "classifier.bias", "model.visual.fc.bias"}
    assert set(list_methods()) >= {"full", "linear"}


def test_an_outcome_cell_has_the_fine_tuned_accuracy_and_no_made_up_zero_shot_baseline(tmp_path):
    tasks = eval_tasks()
    kw = dict(config=CONFIG, data_root=SHARED, cache_dir=tmp_path / "cache", device="cpu", progress=False,
              out=tmp_path / "out")
    cell = run_outcome(NAME, "linear", "digits", 0, tasks, **kw)
    assert cell["acc_zs"] == dict.fromkeys(tasks) and 0 <= cell["acc_ft"]["digits"] <= 1
    assert all(cell["acc_ft"][t] is None for t in tasks if t != "digits")
    assert cell["id_gain"] is None and cell["id_gain_norm"] is None and cell["ood_change"] is None
    assert cell["encoder_id"] == "timm:test_resnet/random-init-seed0"
    exact = exact_deltas(cell)
    assert exact["acc_zs"] is None and exact["id_gain"] is None and exact["ood_change"] is None
    assert exact["acc_ft"] * exact["n_test"] == exact["correct_ft"] and exact["correct_zs"] is None
    path = next((tmp_path / "out" / "outcomes").glob("*.json"))
    assert read_cell(path) == cell  # the stored cell validates with its nulls
    full = run_outcome(NAME, "full", "digits", 0, tasks, **kw)
    assert full["training"]["image_path"] == "backbone" and full["id_gain"] is None


def test_linear_on_a_dual_encoder_keeps_zero_shot_on_the_other_tasks(tmp_path):
    tasks = eval_tasks()
    cell = run_outcome("smoke", "linear", "digits", 0, tasks, config=CONFIG, data_root=SHARED,
                       cache_dir=tmp_path / "cache", device="cpu", progress=False, out=tmp_path / "out")
    assert all(cell["acc_ft"][t] == cell["acc_zs"][t] for t in tasks if t != "digits")  # frozen towers
    assert cell["id_gain"] == pytest.approx(cell["acc_ft"]["digits"] - cell["acc_zs"]["digits"])
    assert cell["trainable"] == {"image": 64 * 10 + 10, "text": 0}


def test_a_grid_scores_the_encoder_and_skips_the_methods_that_do_not_apply(tmp_path):
    from benchmark.grid import Cell, Context, OutcomeCell, run_outcomes, run_scores

    suite = dataclasses.replace(get_suite("smoke"), encoders=(NAME,), tasks=("digits",), n_train=N_TRAIN,
                                n_test=N_TEST, finetune=CONFIG)
    ctx = Context(suite, ("logme", "leep", "iimm"), tmp_path / "out", data_root=str(SHARED),
                  cache_dir=str(tmp_path / "cache"), device="cpu")
    lines = []
    (record,), _ = run_scores(ctx, [Cell(NAME, "digits")], log=lines.append)
    assert record["zero_shot_acc_test"] is None and set(record["scores"]) == {"logme", "leep"}
    assert "image-only" in record["skipped"]["iimm"]
    cells = [OutcomeCell(NAME, m, "digits", 0) for m in ("clip_adapter", "linear")]
    skipped, done = run_outcomes(ctx, cells, ("digits",), log=lines.append)
    assert "does not apply" in skipped["not_applicable"] and done["acc_zs"] == {"digits": None}
    assert any(line.startswith(f"skipped fine-tuning {NAME} x clip_adapter: method") for line in lines)
