"""The shared data sets as lists of image pairs with their ground truth.

Each pair is a :class:`Pair`: fixed and moving image paths (relative to the data root), the
modality, and the ground truth as a 3x3 homography mapping a *moving* pixel to a *fixed* pixel
(x = column, y = row, 0-based), or, for the SuperFusion ``ir_warp`` images, a dense displacement
field. Conventions follow ``MANIFEST.md`` of the data root. The split file ``data/splits.json``
names which pairs train and which test; test pairs never feed training.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from register.config import data_root
from register.geometry import frame_corners, similarity

SPLITS_FILE = Path(__file__).resolve().parents[1] / "data" / "splits.json"
MODALITY_NAMES = ("vis-nir", "opt-sar", "opt-ir", "vis-lwir")
LWIR_FIELD = "vis_lwir_superfusion_misaligned/MSRS"


@dataclass(frozen=True)
class Pair:
    """One image pair. Paths are relative to the data root.

    ``H`` (3x3 float64) maps a moving pixel to a fixed pixel; ``None`` when the truth is the
    dense field of :func:`displacement_field` (``field`` is then the field's name stem).
    ``aligned`` pairs have ``H`` = identity and share one pixel grid. ``warp`` (validation
    pairs) is a synthetic transform applied to the moving image by :func:`load_pair`; ``H`` then
    already maps the *warped* moving image.
    """

    set: str
    name: str
    modality: str
    fixed: str
    moving: str
    H: tuple | None = None
    field: str | None = None
    aligned: bool = False
    warp: tuple | None = None  # synthetic 3x3 warp applied to the moving image when loaded

    @property
    def H_array(self) -> np.ndarray | None:
        return None if self.H is None else np.asarray(self.H, np.float64).reshape(3, 3)


def _h(m: np.ndarray) -> tuple:
    return tuple(float(v) for v in np.asarray(m, np.float64).reshape(-1))


IDENTITY = _h(np.eye(3))


def _srif(subset: str, modality: str, first: int, last: int, root: Path) -> list[Pair]:
    out = []
    with open(root / "srif_multimodal" / "gt_homographies.csv") as f:
        for row in csv.DictReader(f):
            n = int(row["pair"])
            if row["subset"] != subset or not first <= n <= last:
                continue
            H12 = np.array([float(row[k]) for k in
                            "h00 h01 h02 h10 h11 h12 h20 h21 h22".split()]).reshape(3, 3)
            out.append(Pair(f"srif_{subset}", str(n), modality,
                            f"srif_multimodal/{subset}/{row['image_1']}",
                            f"srif_multimodal/{subset}/{row['image_2']}",
                            H=_h(np.linalg.inv(H12))))
    return sorted(out, key=lambda p: int(p.name))


def _epfl(categories: list[str], root: Path) -> list[Pair]:
    out = []
    base = root / "vis_nir_epfl_registration"
    rows = {}
    with open(base / "gt_affine.csv") as f:
        for row in csv.DictReader(f):
            rows[(row["subset"], row["id"])] = row
    for cat in categories:
        for rgb in sorted((base / cat).glob("*_rgb.jpg")):
            stem = rgb.name[:-8]
            rel_f = f"vis_nir_epfl_registration/{cat}/{rgb.name}"
            rel_m = f"vis_nir_epfl_registration/{cat}/{stem}_nir.jpg"
            if cat == "country":
                out.append(Pair("epfl_country", stem, "vis-nir", rel_f, rel_m, H=IDENTITY,
                                aligned=True))
                continue
            row = rows[(cat, stem)]
            M = np.array([[float(row[k]) for k in ("m00", "m01", "m02")],
                          [float(row[k]) for k in ("m10", "m11", "m12")], [0, 0, 1.0]])
            # M maps rgb (fixed) -> nir (moving); we store moving -> fixed
            out.append(Pair(f"epfl_{cat}", stem, "vis-nir", rel_f, rel_m, H=_h(np.linalg.inv(M))))
    return out


def _aligned_folder(set_name: str, folder: str, modality: str, vi: str, ir: str,
                    root: Path) -> list[Pair]:
    out = []
    for p in sorted((root / folder / ir).iterdir()):
        vis = list((root / folder / vi).glob(p.stem + ".*"))
        if len(vis) != 1:
            continue
        out.append(Pair(set_name, p.stem, modality, f"{folder}/{vi}/{vis[0].name}",
                        f"{folder}/{ir}/{p.name}", H=IDENTITY, aligned=True))
    return out


def _bigearthnet(root: Path) -> list[Pair]:
    out = []
    base = root / "geotiff" / "bigearthnet_s1_s2_examples"
    for meta in sorted(base.glob("S1/*/*_labels_metadata.json")):
        s2 = json.loads(meta.read_text())["corresponding_s2_patch"]
        vv = sorted(meta.parent.glob("*_VV.tif"))
        b04 = sorted((base / "S2" / s2).glob("*_B04.tif"))
        if vv and b04:
            out.append(Pair("bigearthnet", meta.parent.name, "opt-sar",
                            str(b04[0].relative_to(root)), str(vv[0].relative_to(root)),
                            H=IDENTITY, aligned=True))
    return out


def _msrs_test(root: Path) -> list[Pair]:
    """MSRS: ``vi`` fixed, ``ir_warp`` moving with the dense ground truth field."""
    out = []
    base = root / LWIR_FIELD
    for p in sorted((base / "ir_warp").iterdir()):
        out.append(Pair("msrs_irwarp", p.stem, "vis-lwir", f"{LWIR_FIELD}/vi/{p.name}",
                        f"{LWIR_FIELD}/ir_warp/{p.name}", field=p.stem))
    return out


@lru_cache(maxsize=None)
def all_pairs(root: str | None = None) -> dict[str, list[Pair]]:
    """Every pair the splits use, keyed by split name (see ``data/splits.json``)."""
    r = Path(root) if root else data_root()
    if not (r / "MANIFEST.md").exists():
        raise FileNotFoundError(
            f"no data at {r}; put the shared data there or set REGISTER_DATA (see data/README.md)")
    epfl_test = ["field", "forest", "indoor", "mountain", "oldbuilding", "street", "urban", "water"]
    return {
        "train/vis-nir": _epfl(["country"], r),
        "train/opt-sar": _srif("optical_sar", "opt-sar", 1, 150, r) + _bigearthnet(r),
        "train/opt-ir": _srif("optical_infrared", "opt-ir", 1, 150, r),
        "train/vis-lwir": _aligned_folder("roadscene", "vis_lwir_roadscene", "vis-lwir", "vi", "ir",
                                          r)
        + _aligned_folder("tno", "vis_lwir_tno", "vis-lwir", "vi", "ir", r),
        "test/vis-nir": _epfl(epfl_test, r),
        "test/opt-sar": _srif("optical_sar", "opt-sar", 151, 200, r),
        "test/opt-ir": _srif("optical_infrared", "opt-ir", 151, 200, r),
        "test/vis-lwir": _msrs_test(r),
    }


VAL_EVERY = 10  # every 10th training image pair (slot % 10 == 0) validates


def slots(pairs: list[Pair]) -> list[int]:
    """1-based slot of each pair in the published enumeration of its split: a SRIF pair's slot
    is its published number (offset by the data sets before it), any other pair's its position
    in sorted file order. A pair missing from the data (SRIF optical-SAR 61, 115 and 137, whose
    truth could not be resolved) leaves its slot empty, so the pairs after it keep theirs.

    Args:
        pairs: one split's pairs in split order (data set after data set).

    Returns:
        one int per pair, strictly increasing.
    """
    out: list[int] = []
    base = last = count = 0
    current = None
    for p in pairs:
        if p.set != current:
            current, base, count = p.set, last, 0
        count += 1
        last = base + (int(p.name) if p.set.startswith("srif_") else count)
        out.append(last)
    return out


def held_out(modality: str, *, every: int = VAL_EVERY) -> list[Pair]:
    """The training-split image pairs held out for validation: those whose :func:`slots` slot is
    a multiple of ``every``.

    The one hold-out rule of the project: ``pipelines.train`` validates the network on the patch
    pairs cut from these image pairs (by name, :func:`held_out_names`) and
    :func:`validation_pairs` builds registration pairs from them, so with the default ``every``
    no validation pair fed the shipped network's training. The rule goes by slot, not by
    position in the list, so removing a pair from the data removes at most that pair from
    validation and moves no other (before the 2026-12-04 correction of the SRIF optical-SAR
    truth, which dropped three training pairs, it went by position; the two agree on the
    complete data).
    """
    pairs = split(f"train/{modality}")
    return [p for p, s in zip(pairs, slots(pairs)) if s % every == 0]


def held_out_names(*, every: int = VAL_EVERY) -> set[str]:
    """``"<set>/<name>"`` of every held-out pair, all modalities (the names patch files store)."""
    return {f"{p.set}/{p.name}" for m in MODALITY_NAMES for p in held_out(m, every=every)}


#: Scale range of the synthetic similarity of :func:`validation_pairs` (log-uniform).
VAL_SCALES = (0.6, 1.6)
#: largest ``perspective`` of :func:`validation_pairs`: corner moves of up to a quarter of the
#: image keep the warped frame a convex quadrilateral (no folded ground truth)
VAL_MAX_PERSPECTIVE = 0.25


def validation_pairs(modality: str, *, seed: int = 0, every: int = VAL_EVERY,
                     scales: tuple[float, float] = VAL_SCALES,
                     perspective: float = 0.0) -> list[Pair]:
    """Held-out training image pairs (:func:`held_out`) under a seeded random similarity (any
    rotation, scale log-uniform in ``scales`` (default 0.6-1.6), shift up to 10 %), for choosing
    options without touching test pairs. A scale above 1 enlarges the moving image (its frame then
    shows the central 1/scale of the scene); below 1 shrinks it inside a nodata border.

    ``perspective`` > 0 follows the similarity with a seeded random projective warp that moves
    each corner of the moving frame by up to ``perspective`` times its width and height (drawn
    from a generator of its own, so the similarities stay those of ``perspective=0``): a
    transform that only a homography represents, like a camera pair that sees a plane at an
    angle.

    With the default ``every`` these are the pairs the network was validated on, not trained on.
    A smaller ``every`` (e.g. 3) gives more pairs, most of which the network was trained on: sound
    for choosing options that do not consult the network.
    """
    lo, hi = scales
    if not 0 < lo <= hi:
        raise ValueError(f"expected scales (lo, hi) with 0 < lo <= hi, got {scales}")
    if not 0 <= perspective < VAL_MAX_PERSPECTIVE:
        raise ValueError(f"expected 0 <= perspective < {VAL_MAX_PERSPECTIVE}, got {perspective}")
    rng = np.random.default_rng(seed)
    rng_p = np.random.default_rng([seed, 1])
    out = []
    for pair in held_out(modality, every=every):
        H = pair.H_array
        h, w = raster_shape(pair.moving)
        a, sc = rng.uniform(0, 360), float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        t = rng.uniform(-0.1, 0.1, 2) * (w, h)
        W = similarity(a, sc, ((w - 1) / 2, (h - 1) / 2), ((w - 1) / 2 + t[0], (h - 1) / 2 + t[1]))
        if perspective > 0:
            c = frame_corners((h, w)).astype(np.float32)
            d = rng_p.uniform(-perspective, perspective, (4, 2)) * (w, h)
            W = cv2.getPerspectiveTransform(c, (c + d).astype(np.float32)) @ W
        out.append(Pair(f"val_{pair.set}", pair.name, pair.modality, pair.fixed, pair.moving,
                        H=_h(H @ np.linalg.inv(W)), warp=_h(W)))
    return out


def raster_shape(rel: str) -> tuple[int, int]:
    import rasterio

    with rasterio.open(data_root() / rel) as src:
        return src.height, src.width


def load_pair(pair: Pair):
    """(fixed, moving) :class:`register.io.Raster` of a pair, the synthetic warp applied.

    The warp goes through :func:`register.warp.warp_raster`; the warped raster's ``valid`` mask
    is :func:`register.warp.warp_valid` of the moving raster's own mask, so outside the footprint is masked
    for float rasters (the BigEarthNet SAR) as for integer ones, while dark pixels inside it
    stay valid (a nodata value of 0 would mask every black SAR or infrared pixel).
    """
    from register.io import Raster, read_image
    from register.warp import warp_raster, warp_valid

    root = data_root()
    fixed, moving = read_image(root / pair.fixed), read_image(root / pair.moving)
    if pair.warp is None:
        return fixed, moving
    W = np.asarray(pair.warp, np.float64).reshape(3, 3)
    data, nodata = warp_raster(moving, W, moving.shape)
    return fixed, Raster(data, warp_valid(moving.valid, W, moving.shape), nodata=nodata,
                         path=moving.path + " (warped)")


#: Georeferenced pairs as they are (no synthetic warp), the georeferencing being the truth: the
#: BigEarthNet Sentinel-2 B04 / Sentinel-1 VV tiles (120 x 120 px, same grid) of the optical-SAR
#: training split. They check what ``register_pair`` does with georeferenced input, not the
#: network (which trained on their patches).
GEOREF_SPLITS = {"georef/opt-sar": "train/opt-sar"}


def split(name: str, *, val_every: int = VAL_EVERY,
          val_scales: tuple[float, float] = VAL_SCALES,
          val_perspective: float = 0.0) -> list[Pair]:
    """Pairs of one split, e.g. ``split("test/opt-sar")``; ``val_every``, ``val_scales`` and
    ``val_perspective`` pick the validation pairs and their synthetic warp (see
    :func:`validation_pairs`); ``georef/opt-sar`` is :data:`GEOREF_SPLITS`."""
    if name.startswith("val/"):
        return validation_pairs(name.split("/", 1)[1], every=val_every, scales=val_scales,
                                perspective=val_perspective)
    pairs = all_pairs(str(data_root()))
    if name in GEOREF_SPLITS:
        return [p for p in pairs[GEOREF_SPLITS[name]] if p.set == "bigearthnet"]
    if name not in pairs:
        raise KeyError(f"unknown split {name!r}; known: {sorted(pairs)}")
    return pairs[name]


def write_splits_file(path: Path = SPLITS_FILE) -> None:
    """Write ``data/splits.json``: for each split, the fixed/moving paths of its pairs."""
    pairs = all_pairs(str(data_root()))
    lines = ["{"]
    for i, (k, v) in enumerate(pairs.items()):
        rows = ",\n".join(f"  {json.dumps([p.fixed, p.moving])}" for p in v)
        lines.append(f" {json.dumps(k)}: [\n{rows}\n ]" + ("," if i < len(pairs) - 1 else ""))
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def displacement_field(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy), each (H, W) float32: moving pixel (x, y) corresponds to fixed (x+dx, y+dy)."""
    base = data_root() / LWIR_FIELD / "gt_disp"
    dx = cv2.imread(str(base / f"{pair.field}_dx.png"), cv2.IMREAD_UNCHANGED)
    dy = cv2.imread(str(base / f"{pair.field}_dy.png"), cv2.IMREAD_UNCHANGED)
    return ((dx.astype(np.float32) - 32768) / 100, (dy.astype(np.float32) - 32768) / 100)


def gt_map(pair: Pair, xy_moving: np.ndarray) -> np.ndarray:
    """Ground-truth fixed positions (N, 2) float64 of moving pixels ``xy_moving`` (N, 2)."""
    xy = np.asarray(xy_moving, np.float64)
    if pair.H is not None:
        p = np.c_[xy, np.ones(len(xy))] @ pair.H_array.T
        return p[:, :2] / p[:, 2:]
    dx, dy = displacement_field(pair)
    mx, my = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
    ddx = cv2.remap(dx, mx[None], my[None], cv2.INTER_LINEAR)[0]
    ddy = cv2.remap(dy, mx[None], my[None], cv2.INTER_LINEAR)[0]
    return np.c_[xy[:, 0] + ddx, xy[:, 1] + ddy]


def select_evenly(items: list, limit: int | None) -> list:
    """``limit`` items spread evenly over the list (all when ``limit`` is None)."""
    if not limit or limit >= len(items):
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, limit)).astype(int))
    return [items[i] for i in idx]
