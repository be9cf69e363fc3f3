"""The embedding cache: content-addressed keys, zero recomputation, damage detection, atomicity.
Real parts throughout: the smoke open_clip encoder and sklearn's digits task."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from encoders import get_encoder
from encoders.cache import ArrayCache, spec_key
from encoders.extract import cache_spec, embed
from tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke():
    return get_encoder("smoke")


@pytest.fixture(scope="module")
def digits():
    return get_task("digits")


def counting(encoder):
    """Wrap the encoder's image tower so the test can count forward passes."""
    calls = []
    original = encoder.model.encode_image

    def encode_image(pixels, *args, **kwargs):
        calls.append(len(pixels))
        return original(pixels, *args, **kwargs)

    encoder.model.encode_image = encode_image
    return calls


def test_second_extraction_does_no_forward_pass(tmp_path, digits):
    encoder = get_encoder("smoke")
    calls = counting(encoder)
    first = embed(encoder, digits, "train", n=40, cache_dir=tmp_path, progress=False)
    assert sum(calls) == 40
    again = embed(encoder, digits, "train", n=40, cache_dir=tmp_path, progress=False)
    assert sum(calls) == 40
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert not again.image.flags.writeable
    np.testing.assert_allclose(np.linalg.norm(again.image, axis=1), 1, rtol=1e-5)
    assert again.meta["task"] == "digits" and again.meta["encoder"] == encoder.id and again.n_classes == 10
    assert np.bincount(again.labels).tolist() == [4] * 10


def test_key_changes_with_every_input_that_changes_the_bytes(smoke, digits):
    base = cache_spec(smoke, digits, "train", 40, 0, "ensemble")
    variants = [cache_spec(smoke, digits, "test", 40, 0, "ensemble"),
                cache_spec(smoke, digits, "train", 41, 0, "ensemble"),
                cache_spec(smoke, digits, "train", 40, 1, "ensemble"),
                cache_spec(smoke, digits, "train", 40, 0, "single"),
                cache_spec(smoke, get_task("mnist"), "train", 40, 0, "ensemble"),
                {**base, "encoder": "other"}, {**base, "weights": "other"},
                {**base, "preprocess": {**base["preprocess"], "size": 64}},
                {**base, "task_version": base["task_version"] + 1}]
    keys = {spec_key(v) for v in variants}
    assert len(keys) == len(variants) and spec_key(base) not in keys


def test_key_ignores_what_does_not_change_the_bytes(smoke, digits):
    spec = cache_spec(smoke, digits, "train", 40, 0, "ensemble")
    assert spec == cache_spec(get_encoder("smoke"), get_task("digits"), "train", 40, 0, "ensemble")
    assert spec_key(spec) == spec_key(dict(reversed(list(spec.items()))))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_detected_and_recomputed(tmp_path, digits, damage, capsys):
    encoder = get_encoder("smoke")
    calls = counting(encoder)
    first = embed(encoder, digits, "test", n=20, cache_dir=tmp_path, progress=False)
    path = ArrayCache(tmp_path).path(cache_spec(encoder, digits, "test", 20, 0, "ensemble"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    again = embed(encoder, digits, "test", n=20, cache_dir=tmp_path, progress=False)
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: damaged cache file")]
    assert sum(calls) == 40
    np.testing.assert_allclose(again.image, first.image, rtol=1e-6)
    assert ArrayCache(tmp_path).get(cache_spec(encoder, digits, "test", 20, 0, "ensemble")) is not None


@pytest.mark.e2e
def test_two_processes_writing_one_key_leave_one_valid_file(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from encoders import get_encoder
        from encoders.extract import embed
        from tasks import get_task
        emb = embed(get_encoder("smoke"), get_task("digits"), "train", n=30, cache_dir=sys.argv[1], progress=False)
        print(emb.n)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outputs == ["30", "30"]
    files = [f for f in (tmp_path / "embeddings").rglob("*") if f.is_file()]
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    spec = cache_spec(get_encoder("smoke"), get_task("digits"), "train", 30, 0, "ensemble")
    assert ArrayCache(tmp_path).get(spec) is not None


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "env-cache"))
    assert ArrayCache().folder == tmp_path / "env-cache" / "embeddings"
    assert ArrayCache(tmp_path / "flag").folder == tmp_path / "flag" / "embeddings"
    assert os.fspath(ArrayCache().folder).startswith(os.fspath(tmp_path))
