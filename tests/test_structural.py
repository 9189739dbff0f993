"""register.structural: oriented-gradient channels."""
from __future__ import annotations

import numpy as np
import torch

from register.structural import (N_ORIENTATIONS, channel_product_sum, correlation_peak,
                                 oriented_gradient_channels, spectrum)


def test_oriented_gradient_channels_shape_and_mask(nir_small):
    img = nir_small
    mask = np.ones(img.shape, bool)
    mask[50:120, 30:200] = False
    ch = oriented_gradient_channels(img, mask)
    assert ch.shape == (N_ORIENTATIONS,) + img.shape and ch.dtype == np.float32
    assert (ch[:, ~mask] == 0).all()
    # zero mean per channel over the valid pixels, and not all zero there
    np.testing.assert_allclose(ch[:, mask].mean(1), 0.0, atol=1e-5)
    assert (ch[:, mask].std(1) > 1e-3).all()
    no_mask = oriented_gradient_channels(img)
    np.testing.assert_allclose(no_mask.mean((1, 2)), 0.0, atol=1e-5)


def test_oriented_gradient_channels_contrast_invariant(nir_small):
    # unsigned orientations: a contrast reversal (as between optical and SAR/thermal) gives the
    # same channels
    a = oriented_gradient_channels(nir_small)
    b = oriented_gradient_channels(1.0 - nir_small)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # a 90 degree rotation moves the energy to the channel 90 degrees away
    r = oriented_gradient_channels(np.ascontiguousarray(np.rot90(nir_small)))
    assert not np.allclose(np.rot90(a, axes=(1, 2)), r, atol=1e-3)
    shift = N_ORIENTATIONS // 2
    np.testing.assert_allclose(np.rot90(a, axes=(1, 2)), np.roll(r, shift, axis=0), atol=0.05)


def test_channel_product_sum_is_the_summed_product_exactly(nir_small):
    # the search's and the check's correlation spectra: the same numbers as (a * b).sum(0),
    # so that accumulating channel by channel changed no result
    img = nir_small
    ref = spectrum(oriented_gradient_channels(img))
    fixed = ref.fft
    moving = torch.fft.rfft2(torch.from_numpy(oriented_gradient_channels(np.roll(img, 5, 1))),
                             s=ref.canvas)
    for b in (moving, torch.conj_physical(moving)):
        out = channel_product_sum(fixed, b)
        assert out.shape == fixed.shape[1:] and out.dtype == torch.complex64
        assert torch.equal(out, (fixed * b).sum(0))
    # and the correlation it feeds peaks at the shift
    z, (dx, dy) = correlation_peak(ref, oriented_gradient_channels(np.roll(img, 5, 1)))
    assert z > 10 and abs(dx + 5) < 0.5 and abs(dy) < 0.5
