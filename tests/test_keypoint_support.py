"""pipelines.keypoint_support: chance and true SIFT support on real validation pairs."""
import math

from pipelines import datasets
from pipelines.keypoint_support import WRONG_PX, pair_support, summary_table
from register.config import Config


def test_pair_support_vis_nir_truth_explains_many(data_root):
    pair = datasets.validation_pairs("vis-nir", seed=1, every=3)[0]
    row = pair_support(pair, Config(modality="vis-nir"))
    assert row["truth"] >= 30 and row["correspondences"] >= row["truth"]
    assert row["best_error_px"] < 5 and row["best"] >= row["truth"] - 5


def test_pair_support_optical_sar_wrong_similarity_explains_few(data_root):
    """Optical-SAR SIFT matches are noise: the best similarity is wrong and explains a handful."""
    pair = datasets.validation_pairs("opt-sar", seed=1, every=3)[0]
    row = pair_support(pair, Config(modality="opt-sar"))
    assert not row["best_error_px"] <= WRONG_PX
    assert row["best"] < 10


def test_summary_table_counts_wrong_draws():
    rows = [{"modality": "vis-nir", "truth": 40, "best": 40, "best_error_px": 1.0},
            {"modality": "opt-sar", "truth": 0, "best": 4, "best_error_px": 80.0},
            {"modality": "opt-sar", "truth": 0, "best": 0, "best_error_px": math.inf}]
    table = summary_table(rows, 30)
    assert "| opt-sar | 2 | 2 | 4 | 0 |" in table and "| all | 3 | 2 | 4 | 1 |" in table
