"""register.patches on a real image: crop convention, affine crops, warping, tensors.

Centre convention (that of cv2.getRectSubPix): patch pixel (row i, col j) of a patch of side S
centred at (x, y) samples the image at (x - (S-1)/2 + j, y - (S-1)/2 + i). For S = 64 a patch
centred at the half-integer point (x + 0.5, y + 0.5) is therefore exactly the slice
``image[y-31 : y+33, x-31 : x+33]``, and a patch at an integer centre (x, y) samples half-pixel
positions, i.e. the 2x2 mean of neighbouring pixels.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from register.io import read_image, to_gray
from register.patches import crop_patches, to_tensor, warp_to_frame


@pytest.fixture(scope="module")
def gray(data_root):
    return to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_1.png"))


def _u8(image):
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


CENTRES = [(100, 80), (256, 256), (400, 300), (40, 470)]


def test_crop_patches_half_integer_centre_is_exact_slice(gray):
    img8 = _u8(gray.image)
    xy = np.array([[x + 0.5, y + 0.5] for x, y in CENTRES], np.float32)
    p = crop_patches(gray.image, xy)
    assert p.shape == (len(CENTRES), 64, 64) and p.dtype == np.uint8
    for i, (x, y) in enumerate(CENTRES):
        assert np.array_equal(p[i], img8[y - 31:y + 33, x - 31:x + 33])


def test_crop_patches_integer_centre_is_2x2_mean(gray):
    img8 = _u8(gray.image).astype(np.float64)
    xy = np.array(CENTRES, np.float32)
    p = crop_patches(gray.image, xy).astype(np.float64)
    for i, (x, y) in enumerate(CENTRES):
        # samples at x - 31.5 + j: mean of columns x-32+j and x-31+j (same for rows)
        mean4 = 0.25 * (img8[y - 32:y + 32, x - 32:x + 32] + img8[y - 32:y + 32, x - 31:x + 33]
                        + img8[y - 31:y + 33, x - 32:x + 32] + img8[y - 31:y + 33, x - 31:x + 33])
        assert np.abs(p[i] - mean4).max() <= 1.0
        # and it is not the plain slice on a textured image
        assert np.abs(p[i] - img8[y - 31:y + 33, x - 31:x + 33]).mean() > 1.0


def test_crop_patches_affine_identity_equals_plain_crop(gray):
    for xy in (np.array(CENTRES, np.float32), np.array(CENTRES, np.float32) + 0.5,
               np.array([[123.3, 201.7], [300.9, 77.2]], np.float32)):
        plain = crop_patches(gray.image, xy).astype(int)
        ident = crop_patches(gray.image, xy, affine=np.eye(2)).astype(int)
        assert np.abs(plain - ident).max() <= 1  # two interpolators, same sampling points
    half = np.array(CENTRES, np.float32) + 0.5
    assert np.array_equal(crop_patches(gray.image, half),
                          crop_patches(gray.image, half, affine=np.eye(2)))


def test_crop_patches_affine_rotation_90(gray):
    xy = np.array(CENTRES, np.float32)
    plain = crop_patches(gray.image, xy, affine=np.eye(2))
    # patch offset u maps to image offset A u: A = [[0, -1], [1, 0]] samples the image rotated
    # by 90 degrees, i.e. np.rot90 of the plain crop
    rot = crop_patches(gray.image, xy, affine=np.array([[0.0, -1.0], [1.0, 0.0]]))
    for i in range(len(xy)):
        assert np.array_equal(rot[i], np.rot90(plain[i], 1))
        assert not np.array_equal(rot[i], plain[i])
    # per-patch affines: (N, 2, 2)
    A = np.stack([np.eye(2), np.array([[0.0, 1.0], [-1.0, 0.0]])] * 2)
    mixed = crop_patches(gray.image, xy, affine=A)
    assert np.array_equal(mixed[0], plain[0])
    assert np.array_equal(mixed[1], np.rot90(plain[1], -1))


def test_crop_patches_affine_scale_2(gray):
    # A = 2 I samples every other pixel: a centred 2x downsampling
    x, y = 256, 256
    img8 = _u8(gray.image)
    p = crop_patches(gray.image, np.array([[x + 0.5, y + 0.5]], np.float32),
                     affine=2 * np.eye(2))[0]
    # patch pixel j samples x + 0.5 + 2 (j - 31.5) = x - 62.5 + 2j: mean of two columns
    ref = img8.astype(float)
    ref = 0.25 * (ref[:-1, :-1] + ref[1:, :-1] + ref[:-1, 1:] + ref[1:, 1:])
    expect = ref[y - 63:y + 65:2, x - 63:x + 65:2]
    assert np.abs(p.astype(float) - expect).max() <= 1.0


def test_crop_patches_zero_outside_image(gray):
    p = crop_patches(gray.image, np.array([[0.5, 0.5]], np.float32))[0]
    assert (p[:31, :] == 0).all() and (p[:, :31] == 0).all()


def test_warp_to_frame_translation_shifts_content(gray):
    tx, ty = 17, -9  # moving (x, y) lands on fixed (x + 17, y - 9)
    H = np.array([[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]])
    h, w = gray.image.shape
    out, m = warp_to_frame(gray.image, gray.mask, H, (h, w))
    assert out.shape == (h, w) and out.dtype == np.float32 and m.dtype == bool
    np.testing.assert_allclose(out[0:h + ty, tx:w], gray.image[-ty:h, 0:w - tx], atol=1e-6)
    assert m[0:h + ty, tx:w].all()
    assert not m[:, :tx].any() and not m[h + ty:, :].any()
    assert (out[:, :tx] == 0).all()


def test_warp_to_frame_other_shape_and_mask(gray):
    # the fixed frame may be larger than the moving image; nodata of the moving image stays out
    mask = gray.mask.copy()
    mask[100:150, 200:260] = False
    H = np.array([[1.0, 0, 40], [0, 1.0, 30], [0, 0, 1.0]])
    out, m = warp_to_frame(gray.image, mask, H, (600, 640))
    assert out.shape == (600, 640)
    assert not m[130:180, 240:300].any()
    assert m[30:130, 40:240].all()
    assert not m[542:, :].any() and not m[:, 552:].any()


def test_to_tensor_shape_dtype_range(gray):
    p = crop_patches(gray.image, np.array(CENTRES, np.float32) + 0.5)
    t = to_tensor(p)
    assert isinstance(t, torch.Tensor)
    assert t.shape == (len(CENTRES), 1, 64, 64) and t.dtype == torch.float32
    assert t.device.type == "cpu"
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    np.testing.assert_allclose(t[:, 0].numpy() * 255.0, p.astype(np.float32), atol=1e-4)
    extremes = to_tensor(np.stack([np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8)]))
    assert float(extremes[0].max()) == 0.0 and float(extremes[1].min()) == 1.0
