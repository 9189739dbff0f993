"""register.write: outputs appear whole or not at all, and read back as written."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from register.io import read_image
from register.write import atomic_path, write_json, write_raster



def test_write_raster_atomic_and_readable(tmp_path, rgbn_path):
    src = read_image(rgbn_path)
    dest = tmp_path / "sub" / "out.tif"
    write_raster(dest, src.data, crs=src.crs, transform=src.transform, nodata=0)
    assert sorted(os.listdir(dest.parent)) == ["out.tif"]  # no temporary file left behind
    back = read_image(dest)
    assert np.array_equal(back.data, src.data)
    assert back.crs == src.crs and back.transform == src.transform and back.nodata == 0


def test_atomic_path_failure_leaves_nothing(tmp_path):
    dest = tmp_path / "report.json"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            assert tmp.parent == dest.parent and tmp != dest
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with atomic_path(dest) as tmp:
        tmp.write_text("{}")
    assert os.listdir(tmp_path) == ["report.json"] and dest.read_text() == "{}"


def test_write_json_replaces_the_destination_whole(tmp_path):
    dest = tmp_path / "out" / "report.json"
    write_json(dest, {"status": "ok", "H": [1.0, 0.0]})
    write_json(dest, {"status": "failed"})
    assert os.listdir(dest.parent) == ["report.json"]
    assert json.loads(dest.read_text()) == {"status": "failed"}
