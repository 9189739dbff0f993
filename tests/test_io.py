"""register.io on real files of the shared data (PNG, JPEG, GeoTIFF, SAR in dB)."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from register.checks import InputError
from register.io import from_array, read_image, to_gray



def _s1_vv(data_root):
    files = sorted((data_root / "geotiff" / "bigearthnet_s1_s2_examples" / "S1").glob("*/*_VV.tif"))
    if not files:
        pytest.skip("shared data missing: bigearthnet S1 *_VV.tif")
    return files[0]


def _write_tif(path, data, *, nodata=None, transform=None, crs="EPSG:32618"):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=crs,
                   transform=transform or from_origin(500000.0, 4000000.0, 10.0, 10.0))
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_read_image_png_gray(data_root):
    path = data_root / "mifnet_examples" / "opt_sar_1.png"
    r = read_image(path)
    assert r.data.shape == (1, 512, 512) and r.data.dtype == np.uint8
    assert r.shape == (512, 512)
    assert not r.georeferenced and r.crs is None and r.transform is None
    assert r.valid.all()
    ref = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(r.data[0], ref)
    g = to_gray(r)
    assert g.image.dtype == np.float32 and g.image.shape == (512, 512)
    assert 0.0 <= g.image.min() and g.image.max() <= 1.0
    assert g.image.max() == 1.0 and g.image.min() == 0.0  # robust stretch uses the full range


def test_read_image_rgb_jpeg_luminance(data_root):
    path = data_root / "vis_nir_epfl_registration" / "field" / "0001_rgb.jpg"
    r = read_image(path)
    assert r.data.ndim == 3 and r.data.shape[0] == 3 and r.data.dtype == np.uint8
    assert not r.georeferenced
    g = to_gray(r)
    rgb = r.data.astype(np.float32)
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    # the output is a monotone (clipped linear) function of the luminance: check correlation
    assert np.corrcoef(lum.ravel(), g.image.ravel())[0, 1] > 0.99
    # band 2 (green) alone differs from the luminance
    g2 = to_gray(r, band=2)
    assert np.abs(r.data[0].astype(int) - r.data[1]).mean() > 5  # a real colour image
    assert not np.allclose(g2.image, g.image, atol=0.02)


def test_read_image_geotiff_rgbn_keeps_georeferencing(rgbn_path):
    path = rgbn_path
    r = read_image(path)
    assert r.data.shape == (4, 403, 515) and r.data.dtype == np.uint8
    assert r.georeferenced
    with rasterio.open(path) as src:
        assert r.crs == src.crs and r.crs.to_epsg() == 32618
        assert r.transform == src.transform
    assert r.transform.a == pytest.approx(5.0) and r.transform.e == pytest.approx(-5.0)
    g = to_gray(r)  # 4 bands: luminance of RGB, NIR ignored
    g4 = to_gray(r, band=4)
    assert g.image.shape == (403, 515)
    assert not np.allclose(g.image, g4.image)


def test_to_gray_sar_db_guessed(data_root):
    r = read_image(_s1_vv(data_root))
    assert r.data.dtype == np.float32 and (r.data < 0).any()
    g = to_gray(r, sar=True)
    assert g.image.dtype == np.float32
    assert g.image.min() >= 0.0 and g.image.max() <= 1.0
    assert g.image.std() > 0.05
    # guessed dB: the same as declaring dB, i.e. a plain robust stretch of the dB values
    g_db = to_gray(r, sar=True, sar_db=True)
    assert np.array_equal(g.image, g_db.image)
    assert np.array_equal(g.image, to_gray(r).image)


def test_to_gray_sar_linear_power_is_log_scaled(data_root):
    r = read_image(_s1_vv(data_root))
    db = r.data.astype(np.float64)
    linear = from_array((10.0 ** (db / 10.0)).astype(np.float32))
    g_lin = to_gray(linear, sar=True)  # all positive -> guessed linear -> 10 log10
    g_db = to_gray(r, sar=True)
    assert np.abs(g_lin.image - g_db.image).max() < 1e-3


def test_from_array_nodata_masked(tmp_path, rgbn_path):
    src = read_image(rgbn_path).data[:, :100, :120].copy()
    src[src == 0] = 1  # keep 0 free for nodata
    src[:, 10:30, 40:70] = 0  # a nodata block in every band
    src[2, 60, 60] = 0  # nodata in one band only also masks the pixel
    path = _write_tif(tmp_path / "nod.tif", src, nodata=0)
    r = read_image(path)
    assert r.nodata == 0
    assert not r.valid[10:30, 40:70].any()
    assert not r.valid[60, 60]
    assert r.valid.sum() == 100 * 120 - 20 * 30 - 1
    g = to_gray(r)
    assert np.array_equal(g.mask, r.valid)
    assert (g.image[~r.valid] == 0).all()


def test_from_array_nan_masked():
    a = np.random.default_rng(0).random((80, 90)).astype(np.float32)
    a[5:9, 5:9] = np.nan
    r = from_array(a)
    assert not r.valid[5:9, 5:9].any() and r.valid.sum() == 80 * 90 - 16
    g = to_gray(r)
    assert np.isfinite(g.image).all()


def test_to_gray_band_out_of_range(rgbn_path):
    r = read_image(rgbn_path)
    with pytest.raises(InputError, match=r"4 band"):
        to_gray(r, band=5)
    with pytest.raises(InputError, match=r"4 band"):
        to_gray(r, band=0)


def test_to_gray_constant_image():
    with pytest.raises(InputError, match="constant"):
        to_gray(from_array(np.full((80, 80), 7, np.uint8)))


def test_to_gray_all_nodata(tmp_path):
    path = _write_tif(tmp_path / "allnod.tif", np.full((80, 80), 255, np.uint8), nodata=255)
    with pytest.raises(InputError, match="nodata"):
        to_gray(read_image(path))


def test_read_image_too_small(data_root, tmp_path, rgbn_path):
    with pytest.raises(InputError, match="64"):
        read_image(rgbn_path, window=Window(0, 0, 63, 200))
    small = cv2.imread(str(data_root / "mifnet_examples" / "opt_sar_1.png"), 0)[:50, :300]
    cv2.imwrite(str(tmp_path / "small.png"), small)
    with pytest.raises(InputError, match="64"):
        read_image(tmp_path / "small.png")
    with pytest.raises(InputError, match="64"):
        from_array(np.zeros((100, 63), np.uint8))


def test_read_image_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.tif")


def test_read_image_not_an_image(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("this is not a raster\n1 2 3\n")
    with pytest.raises(InputError, match="not a readable raster"):
        read_image(txt)
    fake = tmp_path / "fake.tif"
    fake.write_text("hello")
    with pytest.raises(InputError, match="not a readable raster"):
        read_image(fake)


def test_read_image_window_transform(rgbn_path):
    path = rgbn_path
    full = read_image(path)
    win = Window(col_off=100, row_off=50, width=200, height=150)
    r = read_image(path, window=win)
    assert r.data.shape == (4, 150, 200)
    assert np.array_equal(r.data, full.data[:, 50:200, 100:300])
    assert r.georeferenced
    # the window's upper-left corner is pixel (100, 50) of the file
    t = full.transform
    x0, y0 = t.c + t.a * 100 + t.b * 50, t.f + t.d * 100 + t.e * 50
    assert (r.transform.c, r.transform.f) == pytest.approx((x0, y0))
    assert r.transform.a == full.transform.a and r.transform.e == full.transform.e


def test_from_array_nodata_outside_dtype_range(rgbn_path):
    data = read_image(rgbn_path).data  # holds both 241 and 1 values
    assert (data == 241).any() and (data == 1).any()
    assert from_array(data, nodata=-9999.0).valid.all()
    assert from_array(data, nodata=1.5).valid.all()


def test_read_image_truncated_geotiff_says_truncated(tmp_path, rgbn_path):
    """A GeoTIFF cut short opens (its header is intact) but its pixels do not read: the error
    names the file and says it is truncated, instead of GDAL's 'Read failed. See previous
    exception for details.'"""
    src = rgbn_path
    bad = tmp_path / "cut.tif"
    raw = src.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as exc:
        read_image(bad)
    assert str(bad) in str(exc.value) and "previous exception" not in str(exc.value)


def test_read_image_without_rasterio_reads_the_same_pixels(data_root, monkeypatch):
    """The GPU training recipe runs where rasterio is not installed: plain images are then
    decoded by Pillow / OpenCV. Grey images and TIFFs read identically; colour JPEGs differ by
    the decoders' chroma upsampling, well under a grey level on average."""
    import register.io as rio

    files = {"srif_multimodal/optical_sar/pair151_2.jpg": 0.0,
             "vis_lwir_tno/ir/01.png": 0.0,
             "geotiff/bigearthnet_s1_s2_examples/S1": 0.0,
             "vis_nir_epfl_registration/country/0001_rgb.jpg": 1.0}
    want = {}
    for rel in files:
        p = data_root / rel
        if p.is_dir():  # a float32 SAR GeoTIFF
            p = sorted(p.glob("*/*_VV.tif"))[0]
        want[p] = (read_image(p), files[rel])
    monkeypatch.setattr(rio, "rasterio", None)
    for p, (ref, tol) in want.items():
        got = rio.read_image(p)
        assert got.data.shape == ref.data.shape and got.data.dtype == ref.data.dtype, p
        assert got.crs is None and np.array_equal(got.valid, ref.valid), p
        diff = np.abs(got.data.astype(np.float64) - ref.data.astype(np.float64)).mean()
        assert diff <= tol, (p, diff)
        if tol:
            assert diff > 0  # the two decoders do differ on colour JPEGs: the tolerance is real
    with pytest.raises(InputError, match="need rasterio"):
        rio.read_image(next(iter(want)), max_side=64)
