"""register.nn.ssml_qnet: the eval-mode fast path of the branches gives the layers' own numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from register.detect import detect
from register.io import read_image, to_gray
from register.nn.ssml_qnet import Conv, ModelConfig, SSMLQNet, _pool2, _var_mean
from register.patches import crop_patches, to_tensor
from register.score import load_model


@pytest.fixture(scope="module")
def sar_patches(data_root):
    g = to_gray(read_image(data_root / "mifnet_examples/opt_sar_2.png"))
    kp = detect(g.image, g.mask, max_keypoints=48)
    return to_tensor(crop_patches(g.image, kp.xy))


def _layer_by_layer(model: SSMLQNet, x: torch.Tensor, side: str) -> torch.Tensor:
    """The branches run module by module (conv, instance norm, batch norm, ReLU, max-pool)."""
    x = model.standardise(x)
    pseudo = model.pseudo_a if side == "fixed" else model.pseudo_b
    return torch.cat([model.siamese.net(x), pseudo.net(x)], 1)


@pytest.mark.parametrize("name", ["lite", "paper"])
def test_branch_eval_fast_path_matches_layer_by_layer(name, sar_patches):
    model = load_model(name, "cpu", precision="float32")
    with torch.inference_mode():
        for side in ("fixed", "moving"):
            fast = model.embed(sar_patches, side)
            ref = _layer_by_layer(model, sar_patches, side)
            assert fast.shape == ref.shape == (len(sar_patches), 2 * model.config.widths[3], 8, 8)
            assert float(ref.abs().max()) > 1.0  # real activations, not all zeros
            torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)


def test_branch_eval_fast_path_with_negative_folded_scale(sar_patches):
    """A negative folded scale reverses a channel's order: the pool then runs after the ReLU."""
    torch.manual_seed(0)
    model = SSMLQNet(ModelConfig.from_preset("lite")).eval()
    with torch.no_grad():
        for layer in (model.siamese.net[0], model.pseudo_b.net[0]):
            layer.inorm.weight.copy_(torch.linspace(-1.0, 1.0, layer.inorm.weight.numel()))
        assert (model.siamese.net[0].folded()[0] < 0).any()
    with torch.inference_mode():
        torch.testing.assert_close(model.embed(sar_patches, "moving"),
                                   _layer_by_layer(model, sar_patches, "moving"),
                                   atol=2e-5, rtol=1e-5)


def test_branch_training_mode_uses_the_layers():
    """In training the batch statistics must flow through the batch norms (the fast path
    would use the running ones)."""
    torch.manual_seed(0)
    model = SSMLQNet(ModelConfig.from_preset("lite")).train()
    x = torch.randn(8, 1, 64, 64)
    torch.testing.assert_close(model.siamese(x), model.siamese.net(x))
    assert model.siamese(x).requires_grad


def test_var_mean_and_pool2_match_torch():
    y = torch.randn(3, 5, 16, 16, dtype=torch.float32) * 2 + 0.5
    var, mean = _var_mean(y)
    ref_var, ref_mean = torch.var_mean(y, (2, 3), keepdim=True, correction=0)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var, atol=1e-5, rtol=1e-5)
    assert torch.equal(_pool2(y), torch.nn.functional.max_pool2d(y, 2))
    wide = y[:, :, 2:10]  # (3, 5, 8, 16), a strided view
    assert torch.equal(_pool2(wide), torch.nn.functional.max_pool2d(wide, 2))
    assert np.isfinite(_var_mean(torch.zeros(1, 1, 4, 4))[0].numpy()).all()


def test_branch_eval_fast_path_in_bfloat16_stays_close(sar_patches):
    """Under CUDA's bfloat16 autocast the statistics are taken in float32; here the whole
    model runs in bfloat16 on the CPU and stays near its float32 features."""
    model = load_model("lite", "cpu", precision="float32")
    with torch.inference_mode():
        ref = model.embed(sar_patches, "moving")
        low = model.to(torch.bfloat16).embed(sar_patches.to(torch.bfloat16), "moving").float()
    assert torch.isfinite(low).all()
    assert float((low - ref).abs().mean()) < 0.05 * float(ref.abs().mean())


def test_standardise_equals_mean_and_unbiased_std(sar_patches):
    x = sar_patches * 3.0 + 7.0
    ref = (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-3)
    torch.testing.assert_close(SSMLQNet.standardise(x), ref, atol=1e-5, rtol=1e-5)
    flat = torch.full((1, 1, 64, 64), 5.0)  # a flat patch: zeros, not NaN
    assert torch.equal(SSMLQNet.standardise(flat), torch.zeros_like(flat))


def test_conv_compute_dtype_rounds_products_in_eval_only(sar_patches):
    """Conv multiplies in its compute dtype in eval mode (features near float32's), the first
    convolution (one input channel) is a plain Conv2d, and training ignores the setting."""
    model = load_model("lite", "cpu", precision="float32")
    first = model.siamese.net[0].conv
    assert type(first) is torch.nn.Conv2d and isinstance(model.siamese.net[2].conv, Conv)
    with torch.inference_mode():
        ref = model.embed(sar_patches, "moving")
        low = model.set_compute_dtype(torch.bfloat16).embed(sar_patches, "moving")
    assert low.dtype == torch.float32 and not torch.equal(low, ref)
    assert float((low - ref).abs().mean()) < 0.02 * float(ref.abs().mean())
    model.train()
    x = torch.randn(4, 1, 64, 64)
    conv = model.siamese.net[2].conv
    y = torch.randn(4, conv.in_channels, 16, 16)
    torch.testing.assert_close(conv(y), torch.nn.functional.conv2d(y, conv.weight, padding=1))
    assert model.siamese(x).dtype == torch.float32
