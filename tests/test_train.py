"""Training data selection and the training entry point on tiny random patch sets."""
import json

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


def _random_patches(path, n=640, seed=0):
    """Random patch pairs, half of them from a held-out image pair (they validate)."""
    rng = np.random.default_rng(seed)
    names = np.array(["srif_optical_infrared/1", sorted(held_out_names())[0]])
    np.savez(path, fixed=rng.integers(0, 256, (n, 64, 64), np.uint8),
             moving=rng.integers(0, 256, (n, 64, 64), np.uint8),
             label=np.arange(n, dtype=np.uint8) % 2, modality=np.full(n, 2, np.uint8),
             pair=(np.arange(n) >= n // 2).astype(np.int32), pair_names=names)
    return path


def test_main_init_starts_from_the_given_weights(data_root, tmp_path):
    from pipelines.train import main
    from register.score import load_model, weights_for

    shipped = weights_for("all")
    patches = _random_patches(tmp_path / "p.npz")
    out = tmp_path / "run"
    rc = main(["--out", str(out), "--patches", str(patches), "--epochs", "1",
               "--init", str(shipped), "--invert", "0.5", "--threads", "1"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["init"] == str(shipped) and cfg["invert"] == 0.5
    assert set(cfg["init_val_fpr95"]) == {"all", "opt-ir"}
    assert load_model(out / "best.pt").config == load_model(shipped).config


def test_main_init_refuses_another_preset(data_root, tmp_path, capsys):
    from pipelines.train import main
    from register.score import weights_for

    patches = _random_patches(tmp_path / "p.npz", n=64)
    rc = main(["--out", str(tmp_path / "run"), "--patches", str(patches), "--epochs", "1",
               "--preset", "paper", "--init", str(weights_for("all"))])
    assert rc == 2
    assert "pass --preset lite" in capsys.readouterr().err
