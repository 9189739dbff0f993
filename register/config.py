"""All defaults of the registration pipeline, in one place.

Every stage reads its options from a :class:`Config`. A config is frozen; derive a changed copy
with :meth:`Config.replace` (``cfg.replace(max_keypoints=500)``) or build one from a mapping with
:func:`config_from_dict`, which rejects unknown keys with a message naming them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

MODALITIES = ("auto", "opt-sar", "vis-nir", "vis-lwir")
TRANSFORMS = ("auto", "homography", "affine")
DEVICES = ("auto", "cpu", "cuda")

#: Side of the square patches the network scores, in pixels.
PATCH_SIZE = 64
#: Keypoints closer than this to the border (or to nodata) are dropped, in pixels.
BORDER_PX = 32


@dataclass(frozen=True)
class Config:
    """Options of :func:`register.register_pair`; see each field's comment.

    Distances are in pixels of the working resolution (the image scaled so that its longer side
    is at most ``work_max_side``) unless the name says otherwise.
    """

    # -- io --------------------------------------------------------------------------------------
    modality: str = "auto"  # one of MODALITIES; picks normalisation and weights
    band_fixed: int | None = None  # 1-based band; None = luminance of RGB / first band
    band_moving: int | None = None
    sar_db: bool | None = None  # SAR input already in dB; None = guess from values
    speckle_filter: bool = False  # median-filter SAR before scaling
    work_max_side: int = 768  # images are downscaled so their longer side is at most this
    # -- hypotheses (used when the inputs are not both georeferenced) -----------------------------
    search_side: int = 160  # longer side of the images for the coarse rotation/scale search
    search_angle_step_deg: float = 7.5
    search_scales: tuple[float, ...] = (0.5, 0.59, 0.71, 0.84, 1.0, 1.19, 1.41, 1.68, 2.0)
    search_top_k: int = 4  # hypotheses handed to the network stage
    # Coarse peaks are ranked by their z-score standardised against the other angles at the same
    # scale (small scales otherwise win by chance), and the best ``search_rescore`` distinct
    # ones are rescored at twice the resolution before the top_k are refined. Chosen with
    # ``python -m pipelines.search_sweep`` on validation pairs (docs/results.md, "Search").
    search_calibrate: bool = True
    search_rescore: int = 16
    # A SIFT similarity is tried before the search (register.search.keypoint_hypothesis); when
    # it is confirmed and clearly supported, the search does not run.
    keypoint_hypothesis: bool = True
    keypoint_max: int = 2000  # SIFT keypoints per image
    keypoint_min_inliers: int = 15
    # A transform that explains at least this many SIFT ratio-test correspondences (distinct
    # keypoints within ransac_threshold) is confirmed even when the global check's z is low
    # (low-structure scenes); 0 disables. On 1,266 validation draws no similarity more than
    # 20 px off explained more than 7 (python -m pipelines.keypoint_support, docs/results.md "Keypoint
    # confirmation"); 30 keeps a 4x margin.
    keypoint_confirm_inliers: int = 30
    # -- detect ----------------------------------------------------------------------------------
    max_keypoints: int = 300  # keypoints kept in the fixed image
    detector: str = "structure"  # "structure" (structure-tensor corners) | "fast" | "grid"
    nms_radius: int = 8
    # -- match -----------------------------------------------------------------------------------
    search_radius: float = 16.0  # candidate window around each predicted position (px of the
    # matching frame: working px, or enlarged px under match_zoom)
    shortlist: int = 4  # structural-correlation peaks per keypoint scored by the network
    # How a keypoint's shortlisted candidates are ranked: "network" (SSML-QNet probability),
    # "fused" (probability x relative structural correlation) or "structural". Chosen on the
    # validation split (python -m pipelines.evaluate registration --split val, docs/results.md):
    # with the shipped CPU-trained lite weights, "structural" without a probability gate is the
    # most accurate, so the network is not consulted by default; "fused" with
    # min_probability 0.3 is the best setting that uses it.
    selection: str = "structural"
    min_probability: float = 0.0  # a match needs at least this match probability
    ratio: float = 1.0  # the chosen candidate's score must beat ratio x the runner-up's
    refine_iterations: int = 2  # network passes after the first, each with a halved window
    # When the footprint of the moving image in the fixed frame is shorter than match_min_side
    # px (a hypothesis that shrinks the moving image, or a small fixed image), matching runs on
    # the fixed image enlarged until the footprint reaches it (at most match_max_zoom;
    # register.frames.match_zoom); a match_max_zoom of 1 disables. Without it a moving image
    # covering only the middle of a small fixed image (SRIF, 256 px) at scale ~0.5 kept too few
    # keypoints to match (docs/results.md, "Scale stress test"), and so did SRIF's small
    # optical images ("Small fixed frames"). Enlarging larger footprints as well gave wrong
    # small-scale hypotheses enough matches to beat right ones (one validation pair).
    match_min_side: int = 256
    match_max_zoom: float = 2.0
    # -- score -----------------------------------------------------------------------------------
    model: str = "auto"  # "auto" | preset weights name | path to a .pt file | "random"
    batch_size: int = 512
    # -- estimate --------------------------------------------------------------------------------
    # one of TRANSFORMS. "auto" fits a homography and an affine transform to the same matches and
    # keeps the one with the lower GRIC (register.estimate.gric); chosen on validation pairs with
    # and without an added perspective warp against "homography" and "affine"
    # (docs/results.md, "Transform model").
    transform: str = "auto"
    ransac_threshold: float = 3.0  # inlier reprojection threshold (px)
    ransac_iterations: int = 1000  # batches of 256 minimal samples (register.estimate.estimate)
    min_inliers: int = 12
    # a confirmed hypothesis (by the check or by SIFT correspondences, see below) with this
    # inlier share, or with a check z of at least accept_z (0 = off), ends the search. accept_z was chosen on the 142 validation pairs
    # (docs/results.md, "Early accept"): no success rate changed, two results moved < 0.3 px.
    accept_inlier_fraction: float = 0.3
    accept_z: float = 15.0
    # Global check (register.search.verify_alignment): the moving image resampled with a
    # transform must correlate with the fixed image at zero shift (z-score) and the correlation
    # peak must lie within verify_max_shift px (at verify_side resolution). It picks among the
    # hypotheses and confirms the final result. Chosen on 142 validation pairs
    # (python -m pipelines.evaluate registration --split val --val-every 3, docs/results.md):
    # right results (error <= 20 px) had z >= 9.2 (all but one >= 11.25); a wrong one had
    # z 8.6. Since the best of several hypotheses is checked, 8 let chance peaks through.
    verify_side: int = 320
    verify_min_z: float = 9.0
    verify_max_shift: float = 2.0
    # When the final transform's check peaks at least recentre_min_shift px (verify_side
    # resolution) away from zero shift, and no farther than the last matching window (in working
    # px), matching runs once more from the transform moved onto the peak, and the check keeps
    # the better of the two (register.api.register_pair); 0 turns it off. Half of
    # verify_max_shift, so that a transform the peak's offset alone would fail gets the second
    # look; measured on the validation pairs (docs/results.md, "Recentring on the check's
    # peak").
    recentre_min_shift: float = 1.0
    # A homography that bends more than max_affine_deviation (working px) away from its best
    # affine fit over the overlap (register.estimate.affine_deviation) is only confirmed with a
    # check z of at least bent_min_z or by SIFT correspondences; max_affine_deviation 0 disables.
    # RANSAC homographies fitted to chance matches bend and pass the check only weakly. The
    # values came from a throwaway analysis of validation runs; the committed evidence is
    # python -m pipelines.plausibility (docs/results.md, "Plausibility of bent homographies").
    # Real perspective has to be kept: the MIFNet optical-SAR demo pair (a projective warp)
    # bends 24.5-37.5 px at z 14.8-16.4, depending on the keypoint budget. The limit is in
    # absolute working px, checked on images of 173-768 px only.
    max_affine_deviation: float = 24.0
    bent_min_z: float = 13.0
    # When no hypothesis was confirmed, the best one is refined anyway and may pass the check
    # afterwards: refinement optimises against the same structural features, so that needs a
    # clear check z. On the validation runs of docs/results.md
    # ("Scale stress test") the two such results more than 20 px off (val_roadscene/FLIR_07809,
    # 85 px, and FLIR_07190 enlarged 1.6-2x, 184 px) had z 11.2 and 9.3; the rescued results
    # within 8 px had z 11.8-17.9 (two pairs, optical-SAR 81 and FLIR_08021, under 13).
    rescued_min_z: float = 13.0
    # A transform that passes the check only weakly (z < low_z) is confirmed only with at least
    # low_z_min_inliers RANSAC inliers or SIFT correspondences (keypoint_confirm_inliers);
    # low_z 0 disables. A wrong hypothesis fitted to chance matches passes the gate with few
    # inliers: val_srif_optical_infrared/130 (enlarged 1.6-2x) with 12, 128 px off at z 9.3.
    # In the validation runs of docs/results.md (candidates.csv; section "Sub-pixel matching,
    # exact working-resolution maps, weak checks"), the 11 hypotheses that passed the check at
    # z 9-11 with 12-23 inliers were all more than 10 px off (11-278 px), the 8 with 24-170
    # all within 8.3 px: 24 sits at the edge of the right ones, without a margin.
    low_z: float = 11.0
    low_z_min_inliers: int = 24
    seed: int = 0
    # -- warp / outputs --------------------------------------------------------------------------
    make_figures: bool = True


def config_from_dict(values: Mapping[str, Any] | None = None, base: Config | None = None) -> Config:
    """Return ``base`` (default :class:`Config`) with ``values`` applied; unknown keys are errors."""
    base = base or Config()
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
    if "search_scales" in values:
        values["search_scales"] = tuple(float(s) for s in values["search_scales"])
    return dataclasses.replace(base, **values)


def _replace(self: Config, **changes: Any) -> Config:
    return config_from_dict(changes, base=self)


Config.replace = _replace  # type: ignore[attr-defined]


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-JSON form of a config (tuples become lists)."""
    out = dataclasses.asdict(cfg)
    out["search_scales"] = list(cfg.search_scales)
    return out


def data_root() -> Path:
    """Root of the shared data sets: ``$REGISTER_DATA`` or ``../shared/data`` beside the repo."""
    env = os.environ.get("REGISTER_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
