"""``python -m benchmark check``: the preflight names everything missing, with its fix, and exits 1;
with a local checkpoint and (fake) data in place it passes, and the run it promises works."""
from __future__ import annotations

import importlib.util
import json
import re
import struct

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.suites import get_suite
from encoders import conse
from tasks import get_task

MINI = all(importlib.util.find_spec(p) for p in [*(pkg for _, pkg in conse.IMAGE_TOWERS.values()),
                                                 conse.TEXT_PACKAGE])


@pytest.fixture
def offline(offline_hub, monkeypatch, tmp_path):
    """No network, empty caches (``offline_hub``) and an empty data root."""
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(tmp_path / "data"))
    return tmp_path


def check(capsys, *args) -> tuple[int, str]:
    status = main(["check", *args])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def fake_mnist(root, n_train: int = 20, n_test: int = 10) -> None:
    """MNIST in torchvision's raw layout (``<root>/MNIST/raw``, uncompressed IDX files), 2 images per class."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def test_paper_offline_lists_every_missing_weight_and_dataset_with_a_fix(offline, capsys):
    paper = get_suite("paper")
    status, out = check(capsys, "--suite", "paper")
    assert status == 1
    listed = out[out.index("NOT READY"):]
    items = re.findall(r"^\s*\d+\. (weights|data) of (\S+):", listed, flags=re.M)
    assert sorted(name for _, name in items) == sorted([*paper.encoders, *paper.tasks])
    assert listed.count("    fix: ") == len(items) == 14
    assert "python -m benchmark check --suite paper --fetch" in listed
    assert "cells   40 score cells" in out and "200 fine-tuning cells" in out
    # the work the paper preset implies, by hand: 12 (lr x wd) settings x 30 epochs x (n - n_val) images,
    # n = min(5000, train split), n_val = 10% of n; x 4 encoders
    n = [min(5000, get_task(t).splits["train"]) for t in paper.tasks]
    full = 4 * 12 * 30 * sum(k - round(0.1 * k) for k in n)
    assert re.search(rf"full\s+12 settings x 30 epochs:\s+{full:,} passes", out)
    assert "not measured" in out


def test_a_local_checkpoint_and_fake_data_pass_and_the_promised_cell_runs(offline, capsys):
    from encoders.open_clip_encoder import open_clip_encoder

    checkpoint = offline / "weights" / "tb-smoke.pt"
    checkpoint.parent.mkdir()
    torch.save(open_clip_encoder("tb-smoke", None, seed=1).model.state_dict(), checkpoint)
    encoder = f"open_clip:tb-smoke/{checkpoint}"
    suite = offline / "local.json"
    suite.write_text(json.dumps({"name": "local", "encoders": [encoder], "tasks": ["mnist_paper"],
                                 "n_train": 20, "n_test": 10, "prompts": "single"}))
    status, out = check(capsys, "--suite", str(suite))
    assert status == 1 and "1. data of mnist_paper" in out and "NOT READY: 1 missing" in out

    fake_mnist(offline / "data")
    status, out = check(capsys, "--suite", str(suite))
    assert status == 0, out
    assert "ok      mnist_paper: train 20 (declared 60,000), test 10 (declared 10,000)" in out
    assert f"ok      {encoder}: {checkpoint}" in out and "ready" in out
    status, out = check(capsys, "--suite", str(suite), "--data-root", str(offline / "elsewhere"))
    assert status == 1  # --data-root wins over $TRANSFERBENCH_DATA
    assert main(["embed", "--encoder", encoder, "--task", "mnist_paper", "--split", "test",
                 "--cache-dir", str(offline / "cache")]) == 0
    assert "n=10" in capsys.readouterr().out


def test_fetch_goes_up_to_the_network_and_reports_what_is_still_missing(offline, capsys, monkeypatch):
    from encoders.open_clip_encoder import project_open_clip

    monkeypatch.setitem(project_open_clip().pretrained._PRETRAINED, "tb-smoke",
                        {"tbtest": {"url": "", "hf_hub": "tb/smoke-test/"}})
    fake_mnist(offline / "data")
    suite = offline / "hub.json"
    suite.write_text(json.dumps({"name": "hub", "encoders": ["open_clip:tb-smoke/tbtest"], "tasks": ["mnist_paper"],
                                 "n_train": 20, "n_test": 10, "prompts": "single"}))
    status, out = check(capsys, "--suite", str(suite), "--fetch")
    assert status == 1
    assert "fetching the weights of open_clip:tb-smoke/tbtest" in out and "HF_HUB_OFFLINE" in out
    assert "1. weights of open_clip:tb-smoke/tbtest: tb/smoke-test: open_clip_model.safetensors" in out
    assert "fetching mnist_paper" not in out  # present data is not fetched again


@pytest.mark.skipif(not MINI, reason="the `mini` wheels (transferbench[mini]) are not installed")
def test_mini_passes_on_this_machine(capsys):
    from tasks import TaskUnavailable

    try:
        get_task("flowers").labels("test")
    except TaskUnavailable as exc:  # the offline data of ../shared/data is not here
        pytest.skip(str(exc))
    status, out = check(capsys, "--suite", "mini")
    assert status == 0, out
    assert "36 score cells" in out and "180 fine-tuning cells" in out and "measured" in out


@pytest.mark.parametrize("suite, content, message", [
    ("nosuch", None, "unknown suite 'nosuch'"),
    ("bad.json", {"name": "x", "tasks": ["digits"]}, "key 'encoders': missing"),
    ("bad.json", "not json", "cannot read it as JSON"),
    ("bad.json", {"name": "x", "encoders": ["conse-lite"], "tasks": ["digits"], "n_train": 5, "n_test": 5,
                  "prompts": "single"}, "unknown encoder 'conse-lite'"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, suite, content, message):
    if content is not None:
        suite = str(tmp_path / suite)
        (tmp_path / "bad.json").write_text(content if isinstance(content, str) else json.dumps(content))
    status, out = check(capsys, "--suite", suite)
    assert status == 2 and message in out
    assert out.count("\n") == 1 and out.startswith("error: ")


def test_a_device_that_is_not_here_is_missing_and_a_bogus_one_is_bad_input(capsys):
    n = torch.cuda.device_count()
    status, out = check(capsys, "--suite", "smoke", "--device", f"cuda:{n}")
    assert status == 1 and f"1. device cuda:{n}: --device cuda:{n}: " in out
    if not torch.backends.mps.is_available():  # `check` and `run` share one device check (issue 21)
        status, out = check(capsys, "--suite", "smoke", "--device", "mps")
        assert status == 1 and "1. device mps: --device mps: no mps device is available" in out
    status, out = check(capsys, "--suite", "smoke", "--device", "bogus")
    assert status == 2 and out.startswith("error: --device 'bogus'")
