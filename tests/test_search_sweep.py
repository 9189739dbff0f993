"""pipelines.search_sweep: the search's hypothesis rank on a real validation pair."""
from __future__ import annotations

from pipelines import datasets
from pipelines.search_sweep import hypothesis_rank
from register.config import Config


def test_hypothesis_rank_finds_right_hypothesis_on_optical_infrared_pair():
    pair = datasets.validation_pairs("opt-ir", seed=1, every=3)[0]
    rank, err, seconds = hypothesis_rank(pair, Config())
    assert rank == 0, f"right hypothesis not first (smallest corner error {err:.1f} px)"
    assert err < 16.0 and seconds > 0
