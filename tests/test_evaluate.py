"""The evaluation program and its baselines (small; one real pair per baseline)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines import baselines
from pipelines.datasets import split
from pipelines.evaluate import build_parser, main
from pipelines.metrics import checkpoints, pair_error
from register.config import data_root
from register.io import read_image, to_gray


def test_parser_rejects_unknown_set():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["registration", "--sets", "opt-sar,foo"])
    a = build_parser().parse_args(["patches", "--sets", "vis-nir", "--limit", "2"])
    assert a.sets == ["vis-nir"] and a.limit == 2 and a.model == "auto"


@pytest.fixture(scope="module")
def real_pair():
    if not (data_root() / "MANIFEST.md").exists():
        pytest.skip("shared data not available")
    pair = split("test/vis-nir")[0]
    fr, mr = read_image(data_root() / pair.fixed), read_image(data_root() / pair.moving)
    m, c = checkpoints(pair, fr.shape, mr.shape)
    return pair, to_gray(fr).image, to_gray(mr).image, m, c


def test_identity_baseline_on_real_pair(real_pair):
    _, fixed, moving, m, c = real_pair
    H = baselines.identity(fixed, moving)
    assert np.array_equal(H, np.eye(3))
    assert pair_error(H, m, c) > 20


def test_sift_baseline_on_real_pair(real_pair):
    _, fixed, moving, m, c = real_pair
    H = baselines.sift(fixed, moving)
    assert H is None or (H.shape == (3, 3) and np.isfinite(H).all())
    err = pair_error(H, m, c)
    assert err == math.inf or err >= 0


def test_main_registration_writes_candidates_with_errors(data_root, tmp_path):
    """One validation pair end to end: pairs.csv and candidates.csv, whose chosen hypothesis
    is near the truth, and the ``evaluate:registration:val`` section of ``--results``."""
    import csv

    from pipelines.evaluate import main

    argv = ["registration", "--split", "val", "--sets", "opt-ir", "--limit", "1",
            "--methods", "ours", "--model", "random", "--out", str(tmp_path),
            "--results", str(tmp_path / "docs" / "results.md")]
    assert main(argv) == 0
    md = (tmp_path / "docs" / "results.md").read_text()
    assert md.startswith("<!-- BEGIN evaluate:registration:val -->\n\nCommand: "
                         "`python -m pipelines.evaluate registration --split val ")
    assert "\n| opt-ir | ours | 1 | " in md and md.count("<!-- END") == 1
    pairs = list(csv.DictReader(open(tmp_path / "pairs.csv")))
    cands = list(csv.DictReader(open(tmp_path / "candidates.csv")))
    assert len(pairs) == 1 and pairs[0]["status"] == "ok" and cands
    assert {c["pair"] for c in cands} == {pairs[0]["pair"]}
    assert min(float(c["error_px"]) for c in cands if c["confirmed"] == "True") < 5.0
    # the saved config says which arithmetic "auto" meant on this machine
    import json

    from register.score import resolve_precision

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["ours_config"]["precision"] == "auto"
    assert saved["network_precision"] == resolve_precision("auto", "cpu")


def test_main_refuses_val_scale_outside_the_val_split(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["registration", "--val-scale", "1.6", "2.0", "--out", str(out)]) == 2
    assert main(["registration", "--split", "val", "--val-scale", "2.0", "1.6",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--val-scale" in err and not out.exists()


def test_main_refuses_val_perspective_outside_the_val_split(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["registration", "--val-perspective", "0.08", "--out", str(out)]) == 2
    assert main(["registration", "--split", "val", "--val-perspective", "0.3",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--val-perspective" in err and not out.exists()


def test_main_refuses_georef_split_off_optical_sar(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["registration", "--split", "georef", "--out", str(out)]) == 2
    assert main(["registration", "--split", "georef", "--val-scale", "1.6", "2.0", "--sets",
                 "opt-sar", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--sets opt-sar" in err and "--val-scale" in err and not out.exists()


def test_main_refuses_an_include_run_on_other_pairs(tmp_path, capsys):
    run = tmp_path / "persp"
    run.mkdir()
    (run / "pairs.csv").write_text("set,pair,method,status,error_px,seconds\n")
    (run / "config.json").write_text(json.dumps({"split": "val", "val_every": 3,
                                                 "val_scale": [0.6, 1.6],
                                                 "val_perspective": 0.08}))
    out = tmp_path / "out"
    assert main(["registration", "--split", "val", "--val-every", "3", "--include",
                 str(run / "pairs.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--val-perspective 0.08 (here 0.0)" in err and not out.exists()
    assert main(["registration", "--include", str(run / "pairs.csv"), "--out", str(out)]) == 2
    assert "--split val (here test)" in capsys.readouterr().err
    assert main(["registration", "--include", str(tmp_path / "none.csv"), "--out",
                 str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()
