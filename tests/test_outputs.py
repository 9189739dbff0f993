"""register.outputs: figure titles state the status and the numbers behind it."""
from __future__ import annotations

import numpy as np

from register.api import Result
from register.io import from_array
from register.outputs import figure_title


def test_figure_title_states_status_and_numbers():
    f = from_array(np.zeros((80, 80), np.uint8), path="/x/opt.tif")
    m = from_array(np.zeros((80, 80), np.uint8), path="/x/sar.tif")
    ok = Result("ok", H=np.eye(3), rmse_px=1.234, counts={"num_inliers": 57},
                verification={"z_at_zero_shift": 16.42, "confirmed_by": "check"})
    t = figure_title(ok, f, m)
    assert t.startswith("OK") and "sar.tif onto opt.tif" in t
    assert "57 inliers" in t and "RMSE 1.23 px" in t and "z 16.4" in t
    bad = Result("failed", reason="no hypothesis was supported by the matches")
    t = figure_title(bad, f, m)
    assert t.startswith("FAILED") and "no hypothesis was supported" in t
    assert "Closest attempt" not in t
    closest = Result("failed", reason="not confirmed", closest_H=np.eye(3))
    assert "Closest attempt shown" in figure_title(closest, f, m)
