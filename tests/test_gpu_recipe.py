"""The GPU training recipe at tiny scale on the CPU: bundle, patches, training, distillation,
test FPR95 and compact weights, as `pipelines/gpu_recipe.sh` runs them on a GPU machine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def test_gpu_bundle_refuses_over_the_size_limit(data_root, tmp_path, capsys):
    from pipelines.gpu_bundle import main

    assert main(["--out", str(tmp_path / "b"), "--max-mb", "5"]) == 2
    assert "over --max-mb 5" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["--out", str(tmp_path / "b"), "--test-sets", "sar"]) == 2


def test_gpu_recipe_runs_end_to_end_without_rasterio(data_root, tmp_path):
    from pipelines.gpu_bundle import main
    from register.score import load_model

    bundle = tmp_path / "bundle"
    assert main(["--out", str(bundle), "--test-sets", "opt-ir"]) == 0
    doc = json.loads((bundle / "bundle.json").read_text())
    assert doc["mb"] < 60 and (bundle / "recipe.sh").exists()
    # rasterio and kornia hidden, as on the GPU machine
    hide = tmp_path / "hide"
    for name in ("rasterio", "kornia"):
        (hide / name).mkdir(parents=True)
        (hide / name / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(hide), "DEVICE": "cpu", "SEEDS": "0 1", "PER_IMAGE": "4",
           "EPOCHS": "1", "STUDENT_EPOCHS": "1", "MODS": "opt-ir", "PRESET": "lite", "JOBS": "2",
           "WORK": str(tmp_path / "work"), "OMP_NUM_THREADS": "1",
           "BENCH_ARGS": "--preset lite --batch-sizes 16 --seconds 0.1 --matmul-size 128 "
                         "--variants library eager_bf16"}
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(bundle / "recipe.sh"), str(bundle), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    log = (out / "recipe.log").read_text()
    assert r.returncode == 0, log[-3000:]
    assert "failed" not in log, log[-3000:]
    weights = sorted(p.name for p in (out / "weights").iterdir())
    assert weights == ["ssml_qnet_lite_all.md", "ssml_qnet_lite_all.pt",
                       "ssml_qnet_paper_all.md", "ssml_qnet_paper_all.pt"]
    assert load_model(out / "weights" / "ssml_qnet_lite_all.pt").config.preset == "lite"
    student = json.loads((out / "lite" / "config.json").read_text())
    assert student["teacher"].endswith("paper/best.pt") and "teacher_val_fpr95" in student
    assert "opt-ir" in (out / "lite" / "eval" / "summary.csv").read_text()
    bench = json.loads((out / "bench" / "scoring_bench.json").read_text())
    assert {r["variant"] for r in bench["runs"]} == {"library", "eager_bf16"}


def test_gpu_e2e_registers_from_a_bundle_without_rasterio(data_root, tmp_path):
    # pipelines/gpu_e2e.sh at tiny scale on the CPU: a bundle without training images, the
    # benchmark warm with the lite preset and a one-pair evaluation, rasterio hidden as on
    # the GPU machine (kornia present, as its carried wheels make it there)
    from pipelines.gpu_bundle import main

    bundle = tmp_path / "bundle"
    assert main(["--out", str(bundle), "--test-sets", "opt-ir", "--no-training"]) == 0
    doc = json.loads((bundle / "bundle.json").read_text())
    assert doc["training"] is False and doc["mb"] < 15
    assert (bundle / "data" / "mifnet_examples" / "opt_sar_1.png").exists()
    hide = tmp_path / "hide" / "rasterio"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(hide.parent), "DEVICE": "cpu", "MODELS": "auto", "REPEATS": "1",
           "THREADS": "2", "LIMIT": "1", "EVAL_MODEL": "auto", "WORK": str(tmp_path / "work"),
           "BENCH_ARGS": "--preset lite --batch-sizes 4 --seconds 0.02 --matmul-size 64 "
                         "--variants library compile_bf16 --compile-backend eager"}
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(REPO / "pipelines" / "gpu_e2e.sh"), str(bundle), str(out)],
                       env=env, capture_output=True, text=True, timeout=600)
    log = (out / "e2e.log").read_text()
    assert r.returncode == 0, log[-3000:]
    assert "failed" not in log, log[-3000:]
    bench = json.loads((out / "bench_auto" / "config.json").read_text())
    assert bench["median_s"] > 0 and bench["device"] == "cpu"
    rows = (out / "eval" / "pairs.csv").read_text().splitlines()
    assert len(rows) == 2 and ",ok," in rows[1]
    scoring = json.loads((out / "scoring" / "scoring_bench.json").read_text())
    assert [r["variant"] for r in scoring["runs"]] == ["library", "compile_bf16"]
    assert all(r["pairs_per_s"] > 0 for r in scoring["runs"]) and "% of peak" in log


def test_gpu_e2e_without_kornia_says_to_carry_its_wheels(tmp_path):
    from pipelines.gpu_bundle import main

    bundle = tmp_path / "bundle"
    assert main(["--out", str(bundle), "--test-sets", "", "--no-training"]) == 0
    hide = tmp_path / "hide" / "kornia"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(hide.parent), "WORK": str(tmp_path / "work")}
    r = subprocess.run(["bash", str(REPO / "pipelines" / "gpu_e2e.sh"), str(bundle),
                        str(tmp_path / "out")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3 and "carry its wheels" in r.stdout
