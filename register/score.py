"""Scoring patch pairs with SSML-QNet: the only module that moves tensors between devices.

``load_model(name_or_path, device)`` returns a network in eval mode; ``score_pairs`` gives the
match probability of pairs of patches. Work is split into batches of ``batch_size`` (default
:data:`DEFAULT_BATCH` for the device). Precision (:func:`set_precision`, ``precision="auto"``):
bfloat16 where the device multiplies it natively (CUDA autocast; on a CPU with AVX-512 BF16 or
AMX, the convolutions after the first), float32 elsewhere or when asked.
Per-patch branch features are computed once per patch
(:func:`embed`) and reused for every candidate pair it takes part in (:func:`score_features`).

FLOPs per pair (2 x multiply-adds, :func:`register.nn.ssml_qnet.count_flops`):
``lite`` 11.8 MFLOP (7.7 in the two patches' branches, 4.1 in the pair head),
``paper`` 2.52 GFLOP (1.53 + 0.99). With feature reuse a keypoint's branches run once, so a
keypoint with K candidates costs one fixed embedding, K moving embeddings and K heads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checks import InputError
from .config import PRECISIONS, WEIGHTS_DIR
from .write import atomic_path
from .nn.ssml_qnet import ModelConfig, SSMLQNet
from .patches import to_unit_float

#: Shipped weights (``register/weights/MODEL_CARD.md``): one joint model per preset, the
#: paper-width network and the lite preset distilled from it.
WEIGHTS = {"paper": "ssml_qnet_paper_all.pt", "lite": "ssml_qnet_lite_all.pt"}
#: what ``--model auto`` loads on every device: the lite preset, the one validated in
#: registration (docs/results.md, "Candidate selection"); the paper width is ``--model paper``
AUTO_PRESET = "lite"


#: patches or pairs per network batch when none is given. CPU 256: at 512 the lite branch's first
#: map (512 x 16 x 32 x 32 float32, 34 MB) passes glibc's 32 MB mmap limit and is page-faulted
#: afresh each batch; 1,200 moving embeddings took 0.33 s at 512, 0.21 s at 128-256, and 1,200
#: heads 0.16 s against 0.13 s (best of 7, a throwaway timing; docs/results.md "Speed, session
#: 13"). CUDA 2048: 1024-4096 ran fastest on an H200 (issue #17).
DEFAULT_BATCH = {"cpu": 256, "cuda": 2048}


def batch_size_for(device: torch.device, batch_size: int | None = None) -> int:
    """``batch_size``, or the device's :data:`DEFAULT_BATCH` when it is None."""
    if batch_size is not None:
        return int(batch_size)
    return DEFAULT_BATCH.get(device.type, DEFAULT_BATCH["cpu"])


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; other names are checked."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA GPU is visible; use --device cpu "
                         "or --device auto")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: a CUDA GPU, or a CPU with AVX-512 BF16
    or AMX tiles (elsewhere oneDNN would emulate it: not measured, not chosen by ``"auto"``)."""
    if device.type == "cuda":
        return True
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(probe()) for probe in probes if probe is not None)


def set_precision(model: SSMLQNet, precision: str = "auto") -> SSMLQNet:
    """Set the arithmetic ``model`` scores in, on its current device, and return it.

    ``"auto"``: bfloat16 where the device multiplies it natively (:func:`native_bfloat16`),
    else float32; ``"float32"`` gives the same numbers on every CPU. bfloat16 is CUDA autocast
    on a GPU and, on a CPU, the convolutions after the first (:class:`~register.nn.ssml_qnet.Conv`:
    bfloat16 products, float32 sums): on this project's 2-core machine an embedding and a head
    per 256 patch pairs took 41 ms against 58 ms before, probabilities within 0.008 of float32
    on the demo pair's patches (docs/results.md, "Speed, session 18").
    The choice is ``model.precision``.
    """
    dev = _device(model)
    model.precision = resolve_precision(precision, dev)
    bf16 = model.precision == "bfloat16"
    model.set_compute_dtype(torch.bfloat16 if bf16 and dev.type == "cpu" else None)
    return model


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"float32"`` or ``"bfloat16"``: what ``precision`` (one of :data:`PRECISIONS`) means on
    ``device`` (for :func:`set_precision` and the runs' saved configs)."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    native = precision == "auto" and native_bfloat16(resolve_device(device))
    return "bfloat16" if precision == "bfloat16" or native else "float32"


def precision_of(model: SSMLQNet) -> str:
    """``model.precision``; a model that never went through :func:`set_precision` scores in
    float32 on a CPU and under bfloat16 autocast on CUDA."""
    default = "bfloat16" if _device(model).type == "cuda" else "float32"
    return getattr(model, "precision", default)


def weights_for(preset: str = AUTO_PRESET) -> Path | None:
    """Path of the shipped weights of ``preset`` (one joint model serves every modality), or
    None when they are missing."""
    path = WEIGHTS_DIR / WEIGHTS[preset]
    return path if path.exists() else None


def load_model(name_or_path: str | Path = "auto", device: str | torch.device = "cpu", *,
               seed: int = 0, precision: str = "auto") -> SSMLQNet:
    """Load SSML-QNet in eval mode on ``device``.

    Args:
        name_or_path: ``"auto"`` (the shipped weights of :data:`AUTO_PRESET`), ``"lite"`` or
            ``"paper"`` (the shipped weights of that preset), ``"random"`` / ``"random-lite"`` /
            ``"random-paper"`` (a *randomly initialised* network; plumbing tests and speed
            only), or a path to a ``.pt`` file written by ``pipelines.train``.
        device: torch device or ``"auto"``/``"cpu"``/``"cuda"``.
        seed: seed of the random initialisation.
        precision: one of :data:`PRECISIONS` (:func:`set_precision`).

    Raises:
        InputError: unknown name or precision, missing file, or weights that do not fit the
            architecture.
    """
    dev = resolve_device(device)
    name = str(name_or_path)
    if name in ("random", "random-lite", "random-paper"):
        torch.manual_seed(seed)
        preset = "paper" if name == "random-paper" else "lite"
        model = SSMLQNet(ModelConfig.from_preset(preset))
        model.source = f"random-init {preset} (seed {seed})"
        return set_precision(model.eval().to(dev), precision)
    if name in ("auto", *WEIGHTS):
        path = weights_for(AUTO_PRESET if name == "auto" else name)
        if path is None:
            raise InputError("no trained weights are shipped in register/weights; train them "
                             "with `python -m pipelines.train` or pass --model PATH")
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise InputError(f"weights file {path} does not exist; pass a .pt file written by "
                             "pipelines.train, or --model auto, lite or paper")
    ck = read_weights(path)
    try:
        cfg = dict(ck["config"])
        model = SSMLQNet(ModelConfig.from_preset(cfg.pop("preset"), **cfg))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: its model config is not valid ({exc}); retrain or pass "
                         "another weights file") from None
    try:
        model.load_state_dict(ck["model"], strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the network ({str(exc).splitlines()[0]})"
                         ) from None
    model.source = path.name
    return set_precision(model.eval().to(dev), precision)


def read_weights(path: Path) -> dict:
    """A weights file's dict (``model`` state, ``config``), its ``parts`` merged in."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        ck = None
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise InputError(f"{path}: not a weights file written by pipelines.train; pass such a "
                         "file or --model auto")
    for name in ck.get("parts", ()):
        part = path.parent / name
        try:
            ck["model"].update(torch.load(part, map_location="cpu", weights_only=True))
        except Exception:
            raise InputError(f"{path}: its part {name} is missing or unreadable beside it; "
                             "copy all the files of the weights together") from None
    return ck


def save_weights(state: dict, config: dict, dest: str | Path, *,
                 dtype: torch.dtype = torch.float16, max_part_bytes: int = 15_000_000,
                 meta: dict | None = None) -> list[Path]:
    """Write a network's weights compactly for :func:`load_model` and return the files.

    Floating tensors of ``state`` are stored as ``dtype`` (float16 halves a float32 file); when
    they exceed ``max_part_bytes`` they are split over ``dest`` and ``<stem>.partN.pt`` files
    beside it, ``dest`` (which also holds ``config`` and ``meta``) naming the others. Files are
    written atomically, parts first. Loading casts back to float32 (strict keys).
    """
    dest = Path(dest)
    parts: list[dict] = [{}]
    size = 0
    for k, v in state.items():
        v = v.detach().cpu()
        v = v.to(dtype) if v.is_floating_point() else v
        n = v.numel() * v.element_size()
        if parts[-1] and size + n > max_part_bytes:
            parts.append({})
            size = 0
        parts[-1][k] = v.clone()
        size += n
    names = [f"{dest.stem}.part{i}.pt" for i in range(1, len(parts))]
    head = {**(meta or {}), "model": parts[0], "config": config, "parts": names}
    files = [dest.parent / name for name in names] + [dest]  # the head last
    for obj, f in zip(parts[1:] + [head], files):
        with atomic_path(f) as tmp:
            torch.save(obj, tmp)
    return files[-1:] + files[:-1]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(model: SSMLQNet, dev: torch.device):
    bf16 = dev.type == "cuda" and precision_of(model) == "bfloat16"
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)


def _to_device(patches: np.ndarray, dev: torch.device) -> torch.Tensor:
    """(N, S, S) uint8 patches -> (N, 1, S, S) float32 in [0, 1] on ``dev``, the numbers of
    :func:`register.patches.to_tensor`: copied as uint8 (a quarter of float32's bytes; from
    pinned memory on CUDA, so that the copy does not wait for the device) and converted there
    (:func:`register.patches.to_unit_float`)."""
    x = torch.from_numpy(np.ascontiguousarray(patches))
    if dev.type == "cuda":
        x = x.pin_memory()
    return to_unit_float(x.to(dev, non_blocking=True))


@torch.inference_mode()
def embed(model: SSMLQNet, patches: np.ndarray, side: str, *,
          batch_size: int | None = None) -> torch.Tensor:
    """Branch features of (N, 64, 64) uint8 patches, kept on the model's device."""
    dev = _device(model)
    batch_size = batch_size_for(dev, batch_size)
    out = []
    for i in range(0, len(patches), batch_size):
        x = _to_device(patches[i:i + batch_size], dev)
        with _autocast(model, dev):
            out.append(model.embed(x, side).float())
    if not out:
        w = 2 * model.config.widths[3]
        return torch.zeros((0, w, 8, 8), device=dev)
    return torch.cat(out)


@torch.inference_mode()
def score_features(model: SSMLQNet, feat_fixed: torch.Tensor, feat_moving: torch.Tensor,
                   index_fixed: np.ndarray, index_moving: np.ndarray, *,
                   batch_size: int | None = None) -> np.ndarray:
    """Match probability (P,) float32 of pairs ``(index_fixed[p], index_moving[p])`` of
    embedded patches; each patch's features are reused across all its pairs."""
    dev = _device(model)
    batch_size = batch_size_for(dev, batch_size)
    fi = torch.as_tensor(np.asarray(index_fixed, np.int64), device=dev)
    mi = torch.as_tensor(np.asarray(index_moving, np.int64), device=dev)
    out = []
    for i in range(0, len(fi), batch_size):
        with _autocast(model, dev):
            logits = model.head(feat_fixed[fi[i:i + batch_size]], feat_moving[mi[i:i + batch_size]])
        out.append(torch.softmax(logits.float(), 1)[:, 1].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def score_pairs(model: SSMLQNet, patches_fixed: np.ndarray, patches_moving: np.ndarray, *,
                batch_size: int | None = None) -> np.ndarray:
    """Match probability (N,) float32 of N pairs of (N, 64, 64) uint8 patches."""
    if patches_fixed.shape != patches_moving.shape or patches_fixed.ndim != 3:
        raise InputError(f"score_pairs: expected two (N, 64, 64) arrays of equal shape, got "
                         f"{patches_fixed.shape} and {patches_moving.shape}")
    ff = embed(model, patches_fixed, "fixed", batch_size=batch_size)
    fm = embed(model, patches_moving, "moving", batch_size=batch_size)
    idx = np.arange(len(patches_fixed))
    return score_features(model, ff, fm, idx, idx, batch_size=batch_size)


def fpr_at_recall(prob: np.ndarray, label: np.ndarray, recall: float = 0.95) -> float:
    """False-positive rate (in %) at the threshold that keeps ``recall`` of the positives."""
    prob = np.asarray(prob, np.float64)
    label = np.asarray(label).astype(bool)
    if not label.any() or label.all():
        raise InputError("fpr_at_recall needs both positive and negative pairs")
    thr = np.quantile(prob[label], 1.0 - recall)
    return float(100.0 * (prob[~label] >= thr).mean())


def model_info(model: SSMLQNet) -> dict:
    """Name, preset and precision of a loaded model, for reports."""
    return {"weights": getattr(model, "source", "unknown"), "preset": model.config.preset,
            "precision": precision_of(model)}
