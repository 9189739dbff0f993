"""register.score: the network wrapper, on patches cut from a real image pair."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from register.checks import InputError
from register.detect import detect
from register.io import read_image, to_gray
from register.nn.ssml_qnet import ModelConfig, SSMLQNet, count_flops
from register.patches import crop_patches
from register.score import (embed, fpr_at_recall, load_model, model_info, score_features,
                            resolve_precision, score_pairs, set_precision)


@pytest.fixture(scope="module")
def real_patches(data_root, srif_opt_ir_pair):
    p = srif_opt_ir_pair
    f = to_gray(read_image(data_root / p.fixed))
    m = to_gray(read_image(data_root / p.moving))
    kp = detect(f.image, f.mask, max_keypoints=24)
    H_fm = np.linalg.inv(p.H_array)  # fixed -> moving
    q = np.c_[kp.xy, np.ones(len(kp))] @ H_fm.T
    xy_m = (q[:, :2] / q[:, 2:]).astype(np.float32)
    return crop_patches(f.image, kp.xy), crop_patches(m.image, xy_m)


def test_score_pairs_shape_range_deterministic(random_model, real_patches):
    pf, pm = real_patches
    n = len(pf)
    prob = score_pairs(random_model, pf, pm, batch_size=7)  # several batches
    assert prob.shape == (n,) and prob.dtype == np.float32
    assert np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()
    again = score_pairs(random_model, pf, pm, batch_size=512)
    np.testing.assert_allclose(prob, again, atol=1e-5)
    np.testing.assert_array_equal(prob, score_pairs(random_model, pf, pm, batch_size=7))
    # the same seed gives the same network
    other = load_model("random", "cpu")
    np.testing.assert_array_equal(prob, score_pairs(other, pf, pm, batch_size=7))
    # a different seed gives a different one
    assert not np.allclose(prob, score_pairs(load_model("random", "cpu", seed=1), pf, pm))


def test_score_pairs_rejects_mismatched_shapes(random_model, real_patches):
    pf, pm = real_patches
    with pytest.raises(InputError):
        score_pairs(random_model, pf, pm[:-1])


def test_score_features_reuse_equals_score_pairs(random_model, real_patches):
    pf, pm = real_patches
    rng = np.random.default_rng(0)
    idx_f = np.repeat(np.arange(6), 4)  # each fixed patch against 4 moving ones
    idx_m = rng.integers(0, len(pm), len(idx_f))
    ef = embed(random_model, pf[:6], "fixed", batch_size=4)
    em = embed(random_model, pm, "moving", batch_size=5)
    assert ef.shape == (6, 2 * random_model.config.widths[3], 8, 8)
    reused = score_features(random_model, ef, em, idx_f, idx_m, batch_size=10)
    expanded = score_pairs(random_model, pf[idx_f], pm[idx_m])
    assert reused.shape == (len(idx_f),)
    np.testing.assert_allclose(reused, expanded, atol=1e-5)


def test_embed_empty(random_model):
    e = embed(random_model, np.zeros((0, 64, 64), np.uint8), "fixed")
    assert e.shape[0] == 0
    assert score_features(random_model, e, e, np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_count_flops_lite_vs_paper(random_model):
    lite = count_flops(random_model)
    paper = count_flops(SSMLQNet(ModelConfig.from_preset("paper")))
    for c in (lite, paper):
        assert c["pair"] == pytest.approx(c["embed"] + c["head"])
        assert c["embed"] > 0 and c["head"] > 0
    assert paper["pair"] >= 4 * lite["pair"]
    assert paper["embed"] >= 4 * lite["embed"] and paper["head"] >= 4 * lite["head"]


def test_load_model_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.pt", "cpu")


def test_load_model_roundtrip_train_format(tmp_path, random_model, real_patches):
    path = tmp_path / "model.pt"
    torch.save({"model": random_model.state_dict(), "config": random_model.config.to_dict()}, path)
    loaded = load_model(path, "cpu")
    assert not loaded.training
    assert loaded.config == random_model.config
    for (k1, v1), (k2, v2) in zip(random_model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    pf, pm = real_patches
    np.testing.assert_array_equal(score_pairs(loaded, pf, pm), score_pairs(random_model, pf, pm))


def test_load_model_missing_key(tmp_path, random_model):
    state = dict(random_model.state_dict())
    state.pop(next(iter(state)))
    path = tmp_path / "broken.pt"
    torch.save({"model": state, "config": random_model.config.to_dict()}, path)
    with pytest.raises(InputError, match="do not fit"):
        load_model(path, "cpu")
    # a checkpoint without its config is not a pipelines.train file
    torch.save({"model": random_model.state_dict()}, tmp_path / "noconfig.pt")
    with pytest.raises(InputError, match="not a weights file"):
        load_model(tmp_path / "noconfig.pt", "cpu")


def test_load_model_wrong_architecture(tmp_path, random_model):
    path = tmp_path / "wrong.pt"
    cfg = ModelConfig.from_preset("lite", widths=(8, 16, 32, 32)).to_dict()
    torch.save({"model": random_model.state_dict(), "config": cfg}, path)
    with pytest.raises(InputError):
        load_model(path, "cpu")


def test_fpr_at_recall_separable_and_reversed():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.6, 1.0, 200)
    neg = rng.uniform(0.0, 0.4, 300)
    prob = np.r_[pos, neg]
    label = np.r_[np.ones(200), np.zeros(300)]
    assert fpr_at_recall(prob, label) == 0.0
    assert fpr_at_recall(1.0 - prob, label) == 100.0
    # half the negatives above the 95 % recall threshold
    mixed = np.r_[pos, rng.uniform(0.0, 0.4, 150), rng.uniform(0.99, 1.0, 150)]
    assert fpr_at_recall(mixed, label) == pytest.approx(50.0)
    with pytest.raises(InputError):
        fpr_at_recall(pos, np.ones(200))


def test_load_model_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a model\n")
    with pytest.raises(InputError):
        load_model(path, "cpu")


def test_load_model_config_without_preset(tmp_path, random_model):
    cfg = random_model.config.to_dict()
    cfg.pop("preset")
    path = tmp_path / "nopreset.pt"
    torch.save({"model": random_model.state_dict(), "config": cfg}, path)
    with pytest.raises(InputError):
        load_model(path, "cpu")


def test_count_flops_probe_follows_the_model_dtype_and_device():
    """The probe tensor is made where the model is: a float64 model (as a CUDA one) must not
    get a float32 CPU probe (training on CUDA crashed on it before the first step)."""
    model = SSMLQNet(ModelConfig.from_preset("lite")).double()
    flops = count_flops(model)
    lite = count_flops(SSMLQNet(ModelConfig.from_preset("lite")))
    assert flops["pair"] == pytest.approx(lite["pair"])
    assert next(model.parameters()).dtype == torch.float64


def test_save_weights_splits_float16_parts_and_loads_back(tmp_path):
    from register.score import save_weights

    torch.manual_seed(0)
    model = SSMLQNet(ModelConfig.from_preset("lite"))
    files = save_weights(model.state_dict(), model.config.to_dict(), tmp_path / "w.pt",
                         max_part_bytes=200_000, meta={"epoch": 3})
    assert len(files) > 1 and files[0] == tmp_path / "w.pt"
    assert all(f.stat().st_size < 250_000 for f in files)
    back = load_model(tmp_path / "w.pt")  # strict keys: every part was merged
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        p0 = torch.softmax(model.eval()(x, x.flip(2)), 1)
        p1 = torch.softmax(back(x, x.flip(2)), 1)
    assert torch.allclose(p0, p1, atol=2e-3)  # float16 storage, float32 compute
    files[-1].unlink()
    with pytest.raises(InputError, match="part .* is missing"):
        load_model(tmp_path / "w.pt")


def test_load_model_auto_is_the_lite_preset_and_paper_the_shipped_paper_width():
    from register.score import weights_for

    assert weights_for().name == "ssml_qnet_lite_all.pt"
    assert load_model("auto").source == "ssml_qnet_lite_all.pt"
    paper = load_model("paper")  # float16 parts merged, strict keys
    assert paper.config.preset == "paper" and paper.source == "ssml_qnet_paper_all.pt"
    assert load_model("random-paper").source.startswith("random-init paper")


@pytest.mark.parametrize("device, given, expected", [
    ("cpu", None, 256),  # under glibc's mmap limit for the lite branch's first map
    ("cuda", None, 2048),  # 1024-4096 ran fastest on an H200
    ("cpu", 7, 7),  # a given size wins
])
def test_batch_size_for_device_default(device, given, expected):
    from register.score import batch_size_for

    assert batch_size_for(torch.device(device), given) == expected


def test_set_precision_bfloat16_scores_close_to_float32(real_patches):
    """The shipped lite weights on real optical-IR patches: bfloat16 convolutions move no
    probability by more than 0.02, and the reports say which arithmetic ran."""
    pf, pm = real_patches
    model = load_model("auto", "cpu", precision="float32")
    ref = score_pairs(model, pf, pm)
    assert model.precision == "float32" and model_info(model)["precision"] == "float32"
    low = score_pairs(set_precision(model, "bfloat16"), pf, pm)
    assert model_info(model)["precision"] == "bfloat16"
    assert ref.max() > 0.5  # real matches among the pairs
    assert 0 < np.abs(low - ref).max() < 0.02


def test_set_precision_auto_follows_native_bfloat16(monkeypatch, random_model):
    import register.score as score

    for native, expected in ((False, "float32"), (True, "bfloat16")):
        with monkeypatch.context() as m:
            m.setattr(score, "native_bfloat16", lambda device, native=native: native)
            assert set_precision(random_model, "auto").precision == expected
    set_precision(random_model, "auto")  # the session-wide fixture back as it was
    with pytest.raises(InputError, match="float32"):
        set_precision(random_model, "half")
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"


def test_to_device_gives_to_tensors_numbers(real_patches):
    from register.patches import to_tensor
    from register.score import _to_device

    p = real_patches[0]
    x = _to_device(p, torch.device("cpu"))
    assert x.dtype == torch.float32 and x.shape == (len(p), 1, 64, 64)
    assert torch.equal(x, to_tensor(p))
    assert torch.equal(_to_device(p[:0], torch.device("cpu")), to_tensor(p[:0]))
