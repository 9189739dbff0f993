"""Training data selection (the training loop itself runs in the pipelines, not in CI)."""
import numpy as np

from pipelines.datasets import held_out_names
from pipelines.train import load_patches


def test_load_patches_marks_held_out_pairs(data_root, tmp_path):
    """Patch pairs cut from held-out image pairs validate, whatever their index in the file."""
    held = sorted(held_out_names())[0]
    names = np.array(["srif_optical_infrared/1", held, "srif_optical_infrared/2"])
    n = 6
    path = tmp_path / "p.npz"
    np.savez(path, fixed=np.zeros((n, 64, 64), np.uint8), moving=np.zeros((n, 64, 64), np.uint8),
             label=np.ones(n, np.uint8), modality=np.full(n, 2, np.uint8),
             pair=np.array([0, 0, 1, 1, 2, 2], np.int32), pair_names=names)
    data = load_patches([path, path], "all")
    assert data["held_out"].tolist() == [False, False, True, True, False, False] * 2
    assert data["pair"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
