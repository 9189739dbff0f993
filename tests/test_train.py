"""Training data selection and the training entry point on tiny random patch sets."""
import json

import numpy as np

from pipelines.datasets import held_out_names
from pipelines.train import augment_batch, evaluate_fpr95, load_patches


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

    shipped = weights_for()
    patches = _random_patches(tmp_path / "p.npz")
    out = tmp_path / "run"
    rc = main(["--out", str(out), "--patches", str(patches), "--epochs", "1",
               "--init", str(shipped), "--invert", "0.5", "--threads", "1"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["init"] == str(shipped) and cfg["invert"] == 0.5
    # the run started from the shipped weights: their validation FPR95, computed here
    data = load_patches([patches], "all")
    val = {k: v[data["held_out"]] for k, v in data.items()}
    assert cfg["init_val_fpr95"] == evaluate_fpr95(load_model(shipped), val)
    assert load_model(out / "best.pt").config == load_model(shipped).config


def test_main_init_refuses_another_preset(data_root, tmp_path, capsys):
    from pipelines.train import main
    from register.score import weights_for

    patches = _random_patches(tmp_path / "p.npz", n=64)
    rc = main(["--out", str(tmp_path / "run"), "--patches", str(patches), "--epochs", "1",
               "--preset", "paper", "--init", str(weights_for())])
    assert rc == 2
    assert "pass --preset lite" in capsys.readouterr().err


def test_main_patch_seeds_trains_on_each_seed_in_turn(data_root, tmp_path):
    from pipelines.train import main

    p0 = _random_patches(tmp_path / "train_opt-ir_seed0.npz", seed=0)
    _random_patches(tmp_path / "train_opt-ir_seed5.npz", seed=5)
    out = tmp_path / "run"
    rc = main(["--out", str(out), "--patches", str(p0), "--epochs", "2", "--threads", "1",
               "--patch-seeds", "0", "5"])
    assert rc == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]


def test_main_patch_seeds_refuses_missing_or_mismatched_files(data_root, tmp_path, capsys):
    from pipelines.train import main

    p0 = _random_patches(tmp_path / "train_opt-ir_seed0.npz", n=64)
    args = ["--out", str(tmp_path / "run"), "--patches", str(p0), "--epochs", "1"]
    assert main(args + ["--patch-seeds", "0", "7"]) == 2
    assert "train_opt-ir_seed7.npz" in capsys.readouterr().err
    assert main(args + ["--patch-seeds", "3", "0"]) == 2
    assert "put their seed first" in capsys.readouterr().err


def test_augment_batch_keeps_pairs_aligned_and_inverts_about_p_of_each_side():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4000, 64, 64), np.uint8)
    for seed in range(4):  # flips and rotations: both sides alike
        fa, fb = augment_batch(x, x.copy(), np.random.default_rng(seed))
        assert np.array_equal(fa, fb) and fa.shape == x.shape and fa.dtype == np.uint8
    # the same draws for the flip and rotation, then the inversions
    plain = augment_batch(x, x.copy(), np.random.default_rng(1))
    inv = augment_batch(x, x.copy(), np.random.default_rng(1), invert=0.3)
    for p_side, i_side in zip(plain, inv):
        flipped = np.array([np.array_equal(i, 255 - p) for p, i in zip(p_side, i_side)])
        kept = np.array([np.array_equal(i, p) for p, i in zip(p_side, i_side)])
        assert (flipped | kept).all() and 0.27 < flipped.mean() < 0.33
    assert not np.array_equal(*inv)  # each side draws its own inversions


def test_main_refuses_invert_outside_0_1(tmp_path, capsys):
    from pipelines.train import main

    assert main(["--out", str(tmp_path / "run"), "--invert", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_batch_loss_with_teacher_mixes_labels_and_teacher_scores():
    import argparse

    import torch

    from pipelines.train import batch_loss
    from register.score import load_model, weights_for

    torch.manual_seed(0)
    student, teacher = load_model("random-lite", seed=1), load_model(weights_for())
    a, b = torch.rand(8, 1, 64, 64), torch.rand(8, 1, 64, 64)
    y = torch.tensor([0, 1] * 4)
    args = argparse.Namespace(amp=False, distill_alpha=0.0, distill_temperature=2.0)
    ce = batch_loss(student, a, b, y, args)
    assert torch.isclose(batch_loss(student, a, b, y, args, teacher=teacher), ce)
    # alpha 1: only the teacher's term, which is zero when the teacher is the student itself
    args.distill_alpha = 1.0
    assert batch_loss(student, a, b, y, args, teacher=student).abs() < 1e-6
    assert batch_loss(student, a, b, y, args, teacher=teacher) > 1e-4


def test_main_teacher_and_amp_train_a_lite_student(data_root, tmp_path):
    from pipelines.train import main
    from register.score import load_model, weights_for

    patches = _random_patches(tmp_path / "p.npz")
    out = tmp_path / "run"
    rc = main(["--out", str(out), "--patches", str(patches), "--epochs", "1", "--threads", "1",
               "--teacher", str(weights_for()), "--amp"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["amp"] is True and set(cfg["teacher_val_fpr95"]) >= {"all"}
    assert load_model(out / "best.pt").config.preset == "lite"


def test_main_refuses_distill_alpha_outside_0_1(tmp_path, capsys):
    from pipelines.train import main

    assert main(["--out", str(tmp_path / "r"), "--distill-alpha", "1.5"]) == 2
    assert "--distill-alpha" in capsys.readouterr().err


def test_main_epochs_0_only_validates_the_init_weights(data_root, tmp_path):
    from pipelines.train import main
    from register.score import weights_for

    patches = _random_patches(tmp_path / "p.npz")
    out = tmp_path / "run"
    assert main(["--out", str(out), "--patches", str(patches), "--epochs", "0",
                 "--init", str(weights_for()), "--threads", "1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert 0 <= cfg["init_val_fpr95"]["all"] <= 100
    assert not (out / "best.pt").exists()
