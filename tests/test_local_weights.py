"""Weights without internet: a local checkpoint file, a ``local-dir:`` folder, a warm HF cache.

Every checkpoint is saved from a random-init ``tb-smoke`` model drawn with seed 1; the
wrapper's own random init uses seed 0, so equal embeddings prove the weights were loaded.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from encoders import EncoderUnavailable, get_encoder
from encoders.cache import ArrayCache
from encoders.extract import cache_spec
from encoders.open_clip_encoder import CONFIGS, locate, open_clip_encoder, project_open_clip
from estimators.errors import InvalidInput
from tasks import get_task

PIXELS = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
PROMPTS = ["a photo of the number zero", "one"]


@pytest.fixture(scope="module")
def source():
    encoder = open_clip_encoder("tb-smoke", None, seed=1)
    encoder.model.eval()  # as get_encoder leaves every encoder (eval-mode attention computes differently)
    return encoder


def embeddings(encoder) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return encoder.model.encode_image(PIXELS), encoder.model.encode_text(encoder.tokenize(PROMPTS))


def same_embeddings(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(embeddings(a), embeddings(b)))


def save(model, path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)


def cache_key(encoder) -> str:
    return ArrayCache("/unused").path(cache_spec(encoder, get_task("digits"), "test", 10, 0, "single")).stem


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_local_checkpoint_gives_the_embeddings_of_the_model_it_was_saved_from(source, tmp_path, suffix,
                                                                                   monkeypatch):
    path = tmp_path / f"ckpt{suffix}"
    save(source.model, path)
    loaded = get_encoder(f"open_clip:tb-smoke/{path}")  # an absolute path: tb-smoke//tmp/...
    assert same_embeddings(loaded, source)
    assert not same_embeddings(get_encoder("smoke"), source)  # the seed-0 init differs
    monkeypatch.chdir(tmp_path)
    assert same_embeddings(get_encoder(f"open_clip:tb-smoke/ckpt{suffix}"), source)  # a relative one


def test_the_cache_key_follows_the_checkpoints_bytes_not_its_path(source, tmp_path):
    first = tmp_path / "a" / "vitb32.safetensors"
    first.parent.mkdir()
    save(source.model, first)
    elsewhere = tmp_path / "b" / "renamed.safetensors"
    elsewhere.parent.mkdir()
    shutil.copy(first, elsewhere)
    changed = tmp_path / "c.safetensors"
    data = bytearray(first.read_bytes())
    data[-1] ^= 1  # the last byte of the last tensor's data
    changed.write_bytes(bytes(data))

    a, b, c = (get_encoder(f"open_clip:tb-smoke/{p}") for p in (first, elsewhere, changed))
    assert a.id == b.id and cache_key(a) == cache_key(b)
    assert a.id != c.id and cache_key(a) != cache_key(c)
    assert a.id.startswith("open_clip:tb-smoke/sha256:") and str(first) not in json.dumps(cache_spec(
        a, get_task("digits"), "test", 10, 0, "single"))
    first.write_bytes(bytes(data))  # the same path, new bytes: a new key within the same process
    assert cache_key(get_encoder(f"open_clip:tb-smoke/{first}")) == cache_key(c)


def test_a_missing_checkpoint_or_unknown_tag_is_one_clear_line(tmp_path):
    with pytest.raises(EncoderUnavailable, match="not found: checkpoint file .*nope.pt"):
        get_encoder(f"open_clip:tb-smoke/{tmp_path}/nope.pt")
    with pytest.raises(InvalidInput, match="no pretrained tag 'nosuchtag'"):
        get_encoder("open_clip:tb-smoke/nosuchtag")
    assert locate("tb-smoke", str(tmp_path / "nope.pt")).missing == (f"checkpoint file {tmp_path / 'nope.pt'}",)


def open_clip_folder(folder, model, hf_tokenizer: bool) -> None:
    """An open_clip folder as on the HF hub: config (with preprocessing), weights, an HF tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((CONFIGS / "tb-smoke.json").read_text())
    if hf_tokenizer:  # SigLIP's form; a stand-in word-level tokenizer (SigLIP's own needs a download)
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        words = ["[UNK]", "[PAD]", *sorted({w for p in PROMPTS for w in p.split()})]
        tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
            folder)
        cfg["text_cfg"]["hf_tokenizer_name"] = "tb/smoke-hub"
    preprocess = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
    save(model, folder / "open_clip_model.safetensors")


def test_a_local_dir_folder_with_an_hf_tokenizer_loads_like_siglip_would(source, tmp_path):
    folder = tmp_path / "ViT-B-16-SigLIP"
    open_clip_folder(folder, source.model, hf_tokenizer=True)
    loaded = get_encoder(f"open_clip:local-dir:{folder}")
    assert type(loaded.tokenize).__name__ == "HFTokenizer"
    assert loaded.preprocess_config["mean"] == [0.5] * 3 and loaded.preprocess_config["resize_mode"] == "squash"
    with torch.no_grad():
        assert torch.equal(loaded.model.encode_image(PIXELS), source.model.encode_image(PIXELS))
    copy = tmp_path / "elsewhere" / "siglip"
    shutil.copytree(folder, copy)
    assert cache_key(get_encoder(f"open_clip:local-dir:{copy}")) == cache_key(loaded)
    (folder / "tokenizer_config.json").unlink()
    assert locate(f"local-dir:{folder}").missing == (str(folder / "tokenizer_config.json"),)


def hub_snapshot(cache, repo: str, files: dict, absent=()) -> None:
    """``files`` (name -> writer) as a downloaded snapshot of ``repo`` in an HF hub cache, and
    ``absent`` files recorded as missing upstream (as huggingface_hub does after a 404)."""
    base = cache / f"models--{repo.replace('/', '--')}"
    for folder in ("snapshots", ".no_exist"):
        (base / folder / ("0" * 40)).mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text("0" * 40)
    for name, write in files.items():
        write(base / "snapshots" / ("0" * 40) / name)
    for name in absent:
        (base / ".no_exist" / ("0" * 40) / name).touch()


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """No network and an empty HF cache under tmp_path/hub (also for an imported huggingface_hub)."""
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_a_warm_hf_cache_serves_a_pretrained_tag_offline(source, empty_hub, monkeypatch, filename):
    open_clip = project_open_clip()
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "tb-smoke",
                        {"tbtest": {"url": "", "hf_hub": "tb/smoke-test/", "quick_gelu": True}})
    assert locate("tb-smoke", "tbtest").missing == ("tb/smoke-test: open_clip_model.safetensors or "
                                                    "open_clip_pytorch_model.bin (HF cache)",)
    with pytest.raises(EncoderUnavailable, match="HF_HUB_OFFLINE"):
        get_encoder("open_clip:tb-smoke/tbtest")
    hub_snapshot(empty_hub, "tb/smoke-test", {filename: lambda p: save(source.model, p)})
    weights = locate("tb-smoke", "tbtest")
    assert weights.present and weights.found[0].endswith(filename) and weights.found[0].startswith(str(empty_hub))

    quick = get_encoder("open_clip:tb-smoke/tbtest")  # the tag says QuickGELU: built with it
    assert quick.weights_tag == "tbtest+quick_gelu"
    assert any(type(m).__name__ == "QuickGELU" for m in quick.model.modules())
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED["tb-smoke"]["tbtest"], "quick_gelu", False)
    assert same_embeddings(get_encoder("open_clip:tb-smoke/tbtest"), source)


def test_a_warm_hf_cache_serves_an_hf_hub_model_with_its_tokenizer_offline(source, empty_hub, tmp_path):
    folder = tmp_path / "repo"
    open_clip_folder(folder, source.model, hf_tokenizer=True)
    missing = locate("hf-hub:tb/smoke-hub").missing
    assert len(missing) == 3 and "open_clip_config.json" in missing[1] and "tokenizer_config.json" in missing[2]
    hub_snapshot(empty_hub, "tb/smoke-hub", {p.name: (lambda d, p=p: shutil.copy(p, d)) for p in folder.iterdir()})
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:  # it resolves the tokenizer's config.json first
        assert locate("hf-hub:tb/smoke-hub").missing == ("tb/smoke-hub: config.json (HF cache)",)
        with pytest.raises(EncoderUnavailable):
            get_encoder("open_clip:hf-hub:tb/smoke-hub")
    hub_snapshot(empty_hub, "tb/smoke-hub", {}, absent=["config.json"])  # what an online first run leaves
    assert locate("hf-hub:tb/smoke-hub").present
    loaded = get_encoder("open_clip:hf-hub:tb/smoke-hub")
    assert loaded.id == "open_clip:hf-hub:tb/smoke-hub" and type(loaded.tokenize).__name__ == "HFTokenizer"
    with torch.no_grad():
        assert np.array_equal(loaded.model.encode_image(PIXELS).numpy(), source.model.encode_image(PIXELS).numpy())


def test_a_damaged_checkpoint_is_one_line_from_a_run(tmp_path, capsys):
    """Issue 21: a corrupt local checkpoint gave a 98-line traceback from the worker."""
    from benchmark.cli import main

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"x")
    assert main(["run", "--suite", "smoke", "--tasks", "digits", "--no-finetune", "--n-jobs", "1",
                 "--encoders", f"open_clip:tb-smoke/{bad}", "--estimators", "iimm", "--out", str(tmp_path / "r"),
                 "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cannot load the checkpoint" in err[-1] and "Traceback" not in "\n".join(err)
