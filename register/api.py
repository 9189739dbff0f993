"""``register_pair``: the whole pipeline as one function, and writing its outputs.

Stages: io -> hypotheses (georeferencing; or a SIFT similarity, then a rotation/scale search)
-> for each hypothesis: detect -> shortlist candidates -> patches -> score (SSML-QNet) -> select
-> estimate (RANSAC) -> global check; keep the supported hypothesis the global check confirms
best, refine it with smaller search windows and check it again.
"""
from __future__ import annotations

import math
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from . import __version__
from .checks import RegistrationFailed
from .config import BORDER_PX, Config, config_to_dict
from .detect import detect
from .estimate import Estimate, affine_deviation, estimate, support_of, transfer
from .frames import enlarge, georef_homography, is_sar, match_zoom, working_images
from .io import GrayImage, Raster, read_image, to_gray, write_json
from .match import Matches, select, shortlist
from .patches import crop_patches, warp_to_frame
from .score import embed, load_model, model_info, score_features
from .search import (Check, Hypothesis, coarse_hypotheses, corner_distance,
                     keypoint_hypothesis, keypoint_support, oriented_gradient_channels,
                     translation_hypothesis, verify_alignment)

TEMPLATE_HALF = 20


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`register_pair`.

    Attributes:
        status: ``"ok"`` or ``"failed"``.
        reason: why it failed (empty when ok).
        H: (3, 3) float64 homography, moving px -> fixed px at full resolution (x = column,
            y = row, 0-based); None when failed.
        matches: the last stage's selected matches (full-resolution pixels) or None.
        inliers: (M,) bool over ``matches`` or None.
        rmse_px: inlier RMSE in fixed pixels (NaN when failed).
        counts: num_keypoints / num_candidates / num_matches / num_inliers.
        timings: seconds per stage.
        hypothesis: how the start transform was found.
        verification: the global structural check of the final transform
            (:func:`register.search.verify_alignment`): ``z_at_zero_shift``,
            ``peak_shift_px``, ``affine_deviation_px`` (how far the transform bends away from
            an affine one over the overlap; both in working-resolution fixed px),
            ``transform`` (the model RANSAC fitted: ``"homography"`` or ``"affine"``; or
            ``"georeferencing"`` when the georeferencing itself was kept: the check confirmed
            it and ranked it above every transform fitted from it),
            ``recentred`` (whether matching once more from the transform moved onto the
            check's correlation peak gave the final transform),
            ``keypoint_support`` (SIFT correspondences the transform
            explains, when a SIFT hypothesis was found) and, when ok, ``confirmed_by``:
            ``"check"`` (z at least ``verify_min_z``, peak near zero shift) or ``"keypoints"``
            (at least ``keypoint_confirm_inliers`` SIFT correspondences explained).
        candidates: every hypothesis RANSAC supported, in the order tried: ``source``,
            ``angle_deg``, ``scale``, ``num_inliers``, ``z``, ``peak_shift_px``,
            ``affine_deviation_px``, ``transform``, ``confirmed`` and ``H`` (3x3 list, moving
            px -> fixed px at full resolution, before refinement).
    """

    status: str
    reason: str = ""
    H: np.ndarray | None = None
    matches: Matches | None = None
    inliers: np.ndarray | None = None
    rmse_px: float = float("nan")
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    hypothesis: str = ""
    verification: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    model: dict = field(default_factory=dict)
    device: str = "cpu"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class _Verdict:
    """How the evidence judges one transform (``register_pair``'s ``verdict``): the global
    ``check`` (working fixed px), ``by`` ("check", "keypoints" or None when unconfirmed or
    vetoed), the ``veto`` rule ("" if none), the bend (working px) and the SIFT correspondences
    explained (None without a SIFT hypothesis)."""

    check: Check
    by: str | None
    veto: str
    bent: float
    n_kp: int | None

    @property
    def z(self) -> float:
        return self.check.z

    @property
    def shift(self) -> float:
        return self.check.shift

    @property
    def rank(self) -> tuple[bool, float]:
        """Order of preference: confirmed first, then the higher z."""
        return self.by is not None, self.z


class _Timer:
    def __init__(self):
        self.t: dict[str, float] = {}

    def add(self, name: str, since: float) -> None:
        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - since


def _as_raster(x: str | Path | Raster) -> Raster:
    return x if isinstance(x, Raster) else read_image(x)


def network_used(cfg: Config) -> bool:
    """Whether SSML-QNet's probabilities can change the selected matches under ``cfg``."""
    return cfg.selection != "structural" or cfg.min_probability > 0


def _match_under(H: np.ndarray, fixed: GrayImage, moving: GrayImage, feat_fixed: np.ndarray,
                 model, cfg: Config, radius: int, timer: _Timer) -> tuple[Matches, int, int]:
    """Network-scored matches under hypothesis ``H`` (working-resolution moving -> fixed).

    Returns matches in working-resolution pixels, the keypoint count and the candidate count.
    """
    t = time.perf_counter()
    mi, mm = warp_to_frame(moving.image, moving.mask, H, fixed.image.shape)
    valid = fixed.mask & mm
    timer.add("warp_hypothesis", t)
    t = time.perf_counter()
    border = max(BORDER_PX, TEMPLATE_HALF + radius + 1)
    kp = detect(fixed.image, valid, max_keypoints=cfg.max_keypoints, detector=cfg.detector,
                nms_radius=cfg.nms_radius, border=border)
    timer.add("detect", t)
    empty = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32),
                    np.zeros(0, np.float32))
    if len(kp) == 0:
        return empty, 0, 0
    t = time.perf_counter()
    feat_moving = oriented_gradient_channels(mi, mm)
    k = max(1, int(cfg.shortlist))
    cands = shortlist(feat_fixed, feat_moving, np.round(kp.xy), radius=radius, k=k,
                      half=TEMPLATE_HALF)
    timer.add("shortlist", t)
    n = len(cands)
    if network_used(cfg):
        t = time.perf_counter()
        pf = crop_patches(fixed.image, cands.xy_fixed)
        pm = crop_patches(mi, cands.xy_cand.reshape(-1, 2))
        timer.add("patches", t)
        t = time.perf_counter()
        ef = embed(model, pf, "fixed", batch_size=cfg.batch_size)
        em = embed(model, pm, "moving", batch_size=cfg.batch_size)
        idx_f = np.repeat(np.arange(n), k)
        prob = score_features(model, ef, em, idx_f, np.arange(n * k),
                              batch_size=cfg.batch_size).reshape(n, k)
        timer.add("score", t)
    else:  # structural ranking without a probability gate: the network cannot change a match
        prob = np.ones((n, k), np.float32)
        now = time.perf_counter()
        timer.add("patches", now)  # stages skipped, reported as ~0 s so every report has them
        timer.add("score", now)
    prob = np.where(np.isfinite(cands.structural), prob, 0.0)
    keep, best = select(prob, cands.structural, min_probability=cfg.min_probability,
                        ratio=cfg.ratio, mode=cfg.selection)
    xy_f = cands.xy_fixed[keep]
    xy_c = cands.xy_cand[np.arange(n), best][keep]
    xy_m = transfer(np.linalg.inv(H), xy_c).astype(np.float32)
    p = prob[np.arange(n), best][keep].astype(np.float32)
    return Matches(xy_f.astype(np.float32), xy_m, p), n, n * k


def check_inputs(fixed: Raster, moving: Raster, cfg: Config) -> None:
    """Raise :class:`InputError` for inputs ``register_pair`` cannot use (bands, constant or
    all-nodata images, disjoint georeferenced footprints) before any work starts."""
    to_gray(fixed, band=cfg.band_fixed)
    to_gray(moving, band=cfg.band_moving, sar=is_sar(moving, cfg.modality), sar_db=cfg.sar_db)
    if fixed.georeferenced and moving.georeferenced:
        georef_homography(fixed, moving)


def register_pair(fixed: str | Path | Raster, moving: str | Path | Raster,
                  config: Config | None = None, *, device: str = "cpu", model=None,
                  progress: Callable[[str], None] | None = None) -> Result:
    """Register ``moving`` onto ``fixed``.

    Args:
        fixed, moving: file paths or :class:`~register.io.Raster` objects.
        config: options (defaults: :class:`~register.config.Config`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` for the network (ignored when ``model`` is
            given).
        model: a network from :func:`register.score.load_model`, reused across calls.
        progress: called with a short message at each stage.

    Returns:
        A :class:`Result`; ``status == "failed"`` (with ``reason``) when no trustworthy
        transform was found.

    Raises:
        InputError: unreadable, too small, constant or non-overlapping inputs, bad options.
    """
    cfg = config or Config()
    say = progress or (lambda msg: None)
    timer = _Timer()
    t = time.perf_counter()
    fr, mr = _as_raster(fixed), _as_raster(moving)
    fw, mw, Sf, Sm = working_images(fr, mr, cfg)
    timer.add("io", t)
    if model is None:
        t = time.perf_counter()
        model = load_model(cfg.model, device, modality=cfg.modality, seed=cfg.seed)
        timer.add("load_model", t)
    dev = str(next(model.parameters()).device)
    base = dict(model=model_info(model), device=dev)

    georef: Hypothesis | None = None  # the map the two georeferencings imply (working px)
    if fr.georeferenced and mr.georeferenced:
        t = time.perf_counter()
        georef = Hypothesis(H=Sf @ georef_homography(fr, mr) @ np.linalg.inv(Sm),
                            score=float("nan"), angle_deg=0.0, scale=1.0)
        timer.add("hypotheses", t)

    def hypotheses() -> Iterator[tuple[Hypothesis, str]]:
        """(hypothesis, where it came from), lazily: the search runs only when the cheaper
        hypotheses before it were not confirmed."""
        if georef is not None:
            H0 = georef.H
            yield georef, "georeferencing"
            t = time.perf_counter()  # only when the georeferencing itself was not confirmed
            shifted = translation_hypothesis(fw.image, fw.mask, mw.image, mw.mask, H0, cfg)
            timer.add("hypotheses", t)
            if corner_distance(shifted.H, H0, fw.image.shape) > 2.0:
                yield shifted, "georeferencing"  # off by more than a couple of pixels
            return
        t = time.perf_counter()
        if cfg.keypoint_hypothesis:
            kh = keypoint_hypothesis(fw.image, fw.mask, mw.image, mw.mask, cfg)
            timer.add("hypotheses", t)
            if kh is not None:
                yield kh, "keypoint similarity"
        say("searching rotation and scale hypotheses")
        t = time.perf_counter()
        found = coarse_hypotheses(fw.image, fw.mask, mw.image, mw.mask, cfg)
        timer.add("hypotheses", t)
        for h in found:
            yield h, "rotation/scale search"

    # the fixed image, its channels and the map to it from working px, at each matching zoom
    frames: dict[float, tuple[GrayImage, np.ndarray, np.ndarray]] = {}

    def fixed_frame(zoom: float) -> tuple[GrayImage, np.ndarray, np.ndarray]:
        if zoom not in frames:
            g, Z = (fw, np.eye(3)) if zoom == 1.0 else enlarge(fw, zoom)
            frames[zoom] = (g, oriented_gradient_channels(g.image, g.mask), Z)
        return frames[zoom]

    best: tuple[Estimate, Matches, int, int, Hypothesis, str, _Verdict] | None = None
    unsupported: list[tuple[dict, str]] = []  # (counts, reason) of hypotheses RANSAC rejected
    def zoom_for(H: np.ndarray) -> float:
        """Enlargement of the fixed frame that matching under ``H`` uses."""
        return match_zoom(H, mw.image.shape, fw.image.shape, min_side=cfg.match_min_side,
                          max_zoom=cfg.match_max_zoom)

    located: dict[tuple[bytes, int], tuple[Matches, int, int]] = {}

    def match(H: np.ndarray, radius: int) -> tuple[Matches, int, int]:
        """Network/structural matches under ``H`` (working px), the keypoint and candidate
        counts; each (``H``, ``radius``) is matched once (a failure's counts and the
        georeferencing's own judgement reuse them)."""
        key = (np.asarray(H, np.float64).tobytes(), radius)
        if key not in located:
            zoom = zoom_for(H)
            frame, feat, Z = fixed_frame(zoom)
            # radius and the keypoint border are in the matching frame's px (radius / zoom
            # working px)
            matches, nk, nc = _match_under(Z @ H, frame, mw, feat, model, cfg, radius, timer)
            if zoom != 1.0:  # back to working fixed px
                xy = transfer(np.linalg.inv(Z), matches.xy_fixed).astype(np.float32)
                matches = Matches(xy, matches.xy_moving, matches.probability)
            located[key] = matches, nk, nc
        return located[key]

    def fit(H: np.ndarray, radius: int) -> tuple[Estimate, Matches, int, int]:
        """Matches under ``H`` and the RANSAC transform they support."""
        matches, nk, nc = match(H, radius)
        t = time.perf_counter()
        try:
            est = estimate(matches.xy_moving, matches.xy_fixed, mw.image.shape,
                           transform=cfg.transform, threshold=cfg.ransac_threshold,
                           iterations=cfg.ransac_iterations, min_inliers=cfg.min_inliers,
                           seed=cfg.seed, weights=matches.probability)
        finally:
            timer.add("estimate", t)
        return est, matches, nk, nc

    d_verify = min(1.0, cfg.verify_side / max(fw.image.shape))

    support: tuple[np.ndarray, np.ndarray] | None = None  # SIFT correspondences, if any

    def explained(H: np.ndarray) -> int | None:
        """SIFT correspondences ``H`` explains (None without a SIFT hypothesis)."""
        return None if support is None else keypoint_support(H, *support, cfg.ransac_threshold)

    def backed(n_kp: int | None) -> bool:
        """Whether that many explained correspondences confirm a transform on their own."""
        return n_kp is not None and 0 < cfg.keypoint_confirm_inliers <= n_kp

    def verdict(est: Estimate) -> _Verdict:
        """The global structural check of ``est`` and how the evidence judges it, the same in
        the hypothesis loop and for the final transform.

        The check passes at z >= ``cfg.verify_min_z`` with the correlation peak near zero shift.
        ``confirmed_by`` is ``"check"`` or ``"keypoints"``, or None when neither confirms the
        transform or a rule vetoes it. ``veto`` names that rule ("" if none): ``"bent"``, a
        homography bending more than ``cfg.max_affine_deviation`` px away from an affine one
        needs z >= ``cfg.bent_min_z``; ``"weak"``, a check under ``cfg.low_z`` needs
        ``cfg.low_z_min_inliers`` inliers. SIFT correspondences lift both rules.
        """
        t = time.perf_counter()
        check = verify_alignment(fw.image, fw.mask, mw.image, mw.mask, est.H, cfg.verify_side)
        timer.add("verify", t)
        z0, shift = check.z, check.shift
        passes = z0 >= cfg.verify_min_z and shift * d_verify <= cfg.verify_max_shift
        bent = affine_deviation(est.H, fw.image.shape, mw.image.shape)  # working px
        n_kp = explained(est.H)
        kp_ok = backed(n_kp)
        by = "check" if passes else "keypoints" if kp_ok else None
        veto = ""
        if by and not kp_ok:
            if 0 < cfg.max_affine_deviation < bent and z0 < cfg.bent_min_z:
                veto = "bent"
            elif z0 < cfg.low_z and est.num_inliers < cfg.low_z_min_inliers:
                veto = "weak"
        return _Verdict(check, None if veto else by, veto, bent, n_kp)

    # Among the hypotheses that RANSAC supports, the one the global check likes best wins
    # (confirmed, by the check or by SIFT correspondences, first; then the higher z): inlier
    # counts favour large overlaps, so a wrong hypothesis covering the whole image can
    # out-count a right one at a small scale.
    tried = 0
    sources: dict[str, None] = {}  # where the tried hypotheses came from, in order
    candidates: list[dict] = []
    for hyp, source in hypotheses():
        tried += 1
        sources[source] = None
        support = hyp.support if hyp.support is not None else support
        say(f"scoring hypothesis {tried} ({source}: rotation {hyp.angle_deg:.0f} deg, "
            f"scale {hyp.scale:.2f})")
        try:
            est, matches, nk, nc = fit(hyp.H, int(cfg.search_radius))
        except RegistrationFailed as exc:
            m, nk, nc = match(hyp.H, int(cfg.search_radius))  # already matched by fit
            unsupported.append((dict(num_keypoints=nk, num_candidates=nc, num_matches=len(m),
                                     num_inliers=0), exc.reason))
            continue
        judged = verdict(est)
        z0, shift, by, bent = judged.z, judged.shift, judged.by, judged.bent
        H_full = np.linalg.inv(Sf) @ est.H @ Sm
        candidates.append({"source": source, "angle_deg": round(hyp.angle_deg, 2),
                           "scale": round(hyp.scale, 4), "num_inliers": est.num_inliers,
                           "z": round(z0, 3), "peak_shift_px": round(shift, 3),
                           "affine_deviation_px": round(bent, 3), "transform": est.model,
                           "confirmed": by is not None, "H": (H_full / H_full[2, 2]).tolist()})
        if best is None or judged.rank > best[-1].rank:
            best = (est, matches, nk, nc, hyp, source, judged)
        if by is not None and (0 < cfg.accept_z <= z0 or est.num_inliers >= max(
                3 * cfg.min_inliers, cfg.accept_inlier_fraction * nk)):
            break  # confirmed and clearly supported: the remaining hypotheses cannot matter
    how = ", ".join(sources) or "rotation/scale search"
    if tried == 0:
        return Result("failed", "no rotation/scale hypothesis overlaps the fixed image",
                      timings=timer.t, hypothesis=how, **base)
    # The georeferencing itself competes as a transform when the check confirms it: on small
    # or low-structure tiles the matches can support a fit that is a few pixels worse than
    # the georeferencing they started from (docs/results.md, "Georeferencing kept").
    prior = None
    if georef is not None:
        m0, nk0, nc0 = match(georef.H, int(cfg.search_radius))  # the loop's first matches
        e0 = support_of(georef.H, m0.xy_moving, m0.xy_fixed, threshold=cfg.ransac_threshold,
                        model="georeferencing")
        if e0.num_inliers >= cfg.min_inliers:
            v0 = verdict(e0)
            if v0.by is not None:
                prior = (e0, m0, nk0, nc0, georef, "georeferencing", v0)
    if best is None and prior is None:
        # the hypothesis that came closest: the most matches (the first of equals)
        counts, why = max(unsupported, key=lambda u: u[0]["num_matches"])
        return Result("failed", f"no hypothesis was supported by the matches ({why})",
                      counts=counts, timings=timer.t, hypothesis=how, **base)
    base["candidates"] = candidates

    est, matches, nk, nc, hyp, how, judged = best or prior
    found_confirmed = judged.by is not None  # was any hypothesis confirmed before refinement?
    radius = float(cfg.search_radius)
    for it in range(cfg.refine_iterations):
        radius = max(3.0, radius / 2)
        say(f"refining ({it + 1}/{cfg.refine_iterations})")
        try:
            refined = fit(est.H, int(radius))
        except RegistrationFailed:
            break
        if refined[0].num_inliers < 0.8 * est.num_inliers:
            break
        # The refined transform is checked again at the end, and fails when it is no longer
        # confirmed or plausible, even if the unrefined one was: a wrong hypothesis tends to
        # fall apart under refinement. Keeping the unrefined transform instead accepted two
        # more wrong results (31 and 44 px) on the validation runs (docs/results.md, "Scale
        # stress test").
        est, matches, nk, nc = refined
        judged = None

    # the loop's verdict still holds when refinement changed nothing
    judged = judged or verdict(est)
    recentred = False
    window = radius / zoom_for(est.H)  # the last matching window in working px
    if 0 < cfg.recentre_min_shift <= judged.shift * d_verify and judged.shift <= window:
        # The check's correlation peak is off zero shift, but within the last matching window:
        # matches located under a transform that is off by a few px can lock onto
        # it (SAR speckle, repeated texture). Match once more, at that window, from the
        # transform moved onto the peak, and keep whichever of the two the check likes better
        # (docs/results.md, "Recentring on the check's peak"). A peak farther away means a
        # transform off by more than refinement corrects: recentring it accepted one 10 px off.
        say("recentring on the check's peak")
        try:
            moved = fit(judged.check.recentred(est.H), int(radius))
        except RegistrationFailed:
            moved = None
        if moved is not None:
            again = verdict(moved[0])
            if again.rank > judged.rank:
                (est, matches, nk, nc), judged, recentred = moved, again, True
    if prior is not None and prior[-1].rank > judged.rank:
        est, matches, nk, nc, hyp, how, judged = prior
        found_confirmed, recentred = True, False
    z0, shift, by, veto, bent, n_kp = (judged.z, judged.shift, judged.by, judged.veto,
                                       judged.bent, judged.n_kp)
    counts = dict(num_keypoints=nk, num_candidates=nc, num_matches=len(matches),
                  num_inliers=est.num_inliers)
    verification = {"z_at_zero_shift": round(z0, 3), "peak_shift_px": round(shift, 3),
                    "affine_deviation_px": round(bent, 3), "transform": est.model,
                    "recentred": recentred}
    kp_note = ""
    if n_kp is not None:
        verification["keypoint_support"] = n_kp
        kp_note = f"; it explains {n_kp} SIFT correspondences, need {cfg.keypoint_confirm_inliers}"

    def fail(reason: str, why: str = "it is probably wrong") -> Result:
        return Result("failed", f"{reason}{kp_note}); {why}", counts=counts, timings=timer.t,
                      hypothesis=how, verification=verification, **base)

    if veto == "bent":
        return fail(f"the transform that RANSAC found bends {bent:.0f} px away from an affine "
                    f"transform over the overlap (more than {cfg.max_affine_deviation:g} px at "
                    f"the working resolution) with only z {z0:.1f} in the structural check "
                    f"(need {cfg.bent_min_z:g} for a bent transform",
                    "it is probably fitted to chance matches")
    if veto == "weak":
        return fail(f"the structural check passes only weakly (z {z0:.1f}, under "
                    f"{cfg.low_z:g}) and RANSAC found only {est.num_inliers} inliers (need "
                    f"{cfg.low_z_min_inliers} at such a z")
    if by == "check" and not found_confirmed and z0 < cfg.rescued_min_z:
        return fail("no hypothesis was confirmed, and the refined transform passes the "
                    f"structural check only weakly (z {z0:.1f}, need {cfg.rescued_min_z:g} for "
                    "a transform confirmed only after refinement")
    if by is None:
        return fail("the transform that RANSAC found is not confirmed by the global structural "
                    f"check (z {z0:.1f} at zero shift, need {cfg.verify_min_z:g}; correlation "
                    f"peak {shift:.1f} px away")
    verification["confirmed_by"] = by
    H = np.linalg.inv(Sf) @ est.H @ Sm
    H = H / H[2, 2]
    full = Matches(transfer(np.linalg.inv(Sf), matches.xy_fixed).astype(np.float32),
                   transfer(np.linalg.inv(Sm), matches.xy_moving).astype(np.float32),
                   matches.probability)
    return Result("ok", "", H, full, est.inliers, est.rmse_px / Sf[0, 0], counts, timer.t,
                  f"{how} (rotation {hyp.angle_deg:.1f} deg, scale {hyp.scale:.3f})"
                  if how != "georeferencing" else how, verification=verification, **base)


def report(result: Result, fixed: str, moving: str, cfg: Config) -> dict:
    """The ``report.json`` document of a result."""
    import kornia
    import rasterio
    import torch

    doc = {"status": result.status}
    if not result.ok:
        doc["reason"] = result.reason
    doc.update({
        "fixed": str(fixed), "moving": str(moving),
        "homography_moving_to_fixed": None if result.H is None else result.H.tolist(),
        "num_keypoints": result.counts.get("num_keypoints", 0),
        "num_candidates": result.counts.get("num_candidates", 0),
        "num_matches": result.counts.get("num_matches", 0),
        "num_inliers": result.counts.get("num_inliers", 0),
        "inlier_rmse_px": None if not math.isfinite(result.rmse_px) else result.rmse_px,
        "hypothesis": result.hypothesis,
        "verification": result.verification,
        "candidates": result.candidates,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "device": result.device, "model": result.model,
        "network_used": network_used(cfg),
        "versions": {"register": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "kornia": kornia.__version__,
                     "opencv": cv2.__version__, "numpy": np.__version__,
                     "rasterio": rasterio.__version__},
        "config": config_to_dict(cfg),
    })
    return doc


OUTPUTS = ("aligned.tif", "matches.png", "overlay.png", "report.json")


def write_outputs(result: Result, fixed: str | Path | Raster, moving: str | Path | Raster,
                  out_dir: str | Path, cfg: Config) -> list[Path]:
    """Write ``aligned.tif``, ``matches.png``, ``overlay.png`` (when ok) and ``report.json``.

    Everything is written into a temporary folder beside ``out_dir`` and moved into place at the
    end, so an interrupted run leaves no half-written output.
    """
    from .plot import plot_matches, plot_overlay
    from .warp import write_aligned

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    fr, mr = _as_raster(fixed), _as_raster(moving)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if result.ok:
            write_aligned(tmp / "aligned.tif", mr, result.H, fr)
            if cfg.make_figures:
                fg = to_gray(fr, band=cfg.band_fixed)
                mg = to_gray(mr, band=cfg.band_moving, sar=is_sar(mr, cfg.modality),
                             sar_db=cfg.sar_db)
                m = result.matches
                plot_matches(tmp / "matches.png", fg.image, mg.image, m.xy_fixed, m.xy_moving,
                             result.inliers,
                             title=f"{Path(mr.path).name or 'moving'} onto {Path(fr.path).name or 'fixed'}")
                plot_overlay(tmp / "overlay.png", fg.image, mg.image, result.H)
        write_json(tmp / "report.json", report(result, fr.path, mr.path, cfg))
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            src = tmp / name
            if src.exists():
                src.replace(out / name)
                written.append(out / name)
            elif (out / name).exists():
                (out / name).unlink()  # stale output of an earlier run
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
