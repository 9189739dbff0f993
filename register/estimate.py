"""Robust transform estimation, seeded: a homography or an affine transform with kornia's
RANSAC, a similarity with a two-point RANSAC of its own (:func:`fit_similarity`), or
(``transform="auto"``) several, keeping the one the geometric robust information criterion
(:func:`gric`) prefers.

A result with fewer than ``min_inliers`` inliers, a non-finite matrix, or a degenerate transform
(folding, extreme anisotropy or scale) is a :class:`~register.checks.RegistrationFailed`, never
a number.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from kornia.geometry.ransac import RANSAC

from .checks import RegistrationFailed, check_points
from .config import EstimateConfig
from .geometry import frame_corners, transfer
from .threads import torch_threads


@dataclass(frozen=True)
class Estimate:
    """A transform supported by matches.

    Attributes:
        H: (3, 3) float64 homography, moving px -> fixed px (x = column, y = row, 0-based),
            normalised so ``H[2, 2] == 1``.
        inliers: (M,) bool inlier mask over the matches it was fitted to.
        rmse_px: root-mean-square transfer error of the inliers, in fixed pixels.
        model: the transform model that was fitted, ``"homography"``, ``"affine"`` or
            ``"similarity"`` (with
            ``transform="auto"``, the one :func:`gric` preferred), or what a given transform
            is (:func:`support_of`, e.g. ``"georeferencing"``).
    """

    H: np.ndarray
    inliers: np.ndarray
    rmse_px: float
    model: str

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def affine_deviation(H: np.ndarray, shape_fixed: tuple[int, int], shape_moving: tuple[int, int],
                     *, grid: int = 25) -> float:
    """How far a homography bends away from its best affine fit over the overlap, in fixed px.

    The fixed frame is sampled on a ``grid`` x ``grid`` lattice; the points whose preimage under
    ``H`` lies inside the moving image (the overlap) are mapped back, an affine transform is
    fitted to those (moving, fixed) pairs by least squares, and the largest distance between
    it and ``H`` is returned. An affine ``H`` gives 0; a homography that RANSAC fitted to chance
    matches usually bends far more than a right one (``register.config.Config`` has the
    validation figures).

    Args:
        H: (3, 3) homography, moving px -> fixed px (x = column, y = row, 0-based).
        shape_fixed, shape_moving: (H, W) of the two images in the pixels ``H`` uses.
        grid: lattice points per side.

    Returns:
        The deviation in fixed pixels; 0.0 when fewer than 6 lattice points fall in the
        overlap (too little to tell).
    """
    hf, wf = shape_fixed
    hm, wm = shape_moving
    xs, ys = np.meshgrid(np.linspace(0, wf - 1, grid), np.linspace(0, hf - 1, grid))
    xy_fixed = np.c_[xs.ravel(), ys.ravel()]
    with np.errstate(all="ignore"):
        xy_moving = transfer(np.linalg.inv(np.asarray(H, np.float64)), xy_fixed)
    inside = (np.isfinite(xy_moving).all(1) & (xy_moving[:, 0] >= 0) & (xy_moving[:, 0] <= wm - 1)
              & (xy_moving[:, 1] >= 0) & (xy_moving[:, 1] <= hm - 1))
    if inside.sum() < 6:
        return 0.0
    A = np.c_[xy_moving[inside], np.ones(int(inside.sum()))]
    coef = _affine_lstsq(xy_moving[inside], xy_fixed[inside])
    return float(np.linalg.norm(A @ coef - xy_fixed[inside], axis=1).max())


#: free parameters of each transform model (for :func:`gric`)
MODEL_DOF = {"homography": 8, "affine": 6, "similarity": 4}
#: the models ``transform="auto"`` fits and compares by default, first kept on a tie
AUTO_MODELS = EstimateConfig.auto_models


def gric(H: np.ndarray, xy_moving: np.ndarray, xy_fixed: np.ndarray, *, sigma: float,
         dof: int) -> float:
    """Torr's geometric robust information criterion of a 2D transform; lower is better.

    Each match costs its squared transfer error in units of ``sigma ** 2``, capped at 4 (a match
    more than ``2 * sigma`` off counts as an outlier, whatever its error); the model pays
    ``ln(4 n)`` per free parameter. Between a homography (8) and an affine transform (6) fitted
    to the same n matches, the homography wins only when its perspective terms explain the
    matches better by more than ``2 ln(4 n)``: enough more inliers or tighter residuals, not
    the few chance matches that two extra degrees of freedom can always bend towards. Torr's
    per-match term (``2 n ln 4`` for a 2D relation in 4D data) is the same for both models and
    left out.

    Args:
        H: (3, 3) transform, moving px -> fixed px.
        xy_moving, xy_fixed: (N, 2) float pixel coordinates of the matches (x = column,
            y = row, 0-based).
        sigma: the matches' localisation noise, fixed px (> 0).
        dof: the model's free parameters (:data:`MODEL_DOF`).

    Raises:
        ValueError: ``sigma`` is not a positive number.
    """
    if not sigma > 0 or not np.isfinite(sigma):
        raise ValueError(f"expected sigma > 0 (the matches' noise in px), got {sigma}")
    with np.errstate(all="ignore"):
        e2 = ((transfer(H, xy_moving) - xy_fixed) ** 2).sum(1) / sigma ** 2
    e2 = np.where(np.isfinite(e2), e2, np.inf)
    return float(np.minimum(e2, 4.0).sum() + np.log(4 * max(len(e2), 1)) * dof)


def check_transform(H: np.ndarray, shape_moving: tuple[int, int], *, max_scale: float = 8.0,
                    max_anisotropy: float = 4.0) -> str | None:
    """Why ``H`` is degenerate over a moving image of ``shape_moving`` (H, W), or None if fine."""
    if not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12:
        return "the estimated transform is not finite"
    h, w = shape_moving
    corners = frame_corners(shape_moving)
    hom = np.c_[corners, np.ones(4)] @ (H / H[2, 2]).T
    if (hom[:, 2] <= 1e-6).any():
        return "the estimated transform sends part of the image to infinity"
    # local Jacobians at the corners and centre: orientation, scale, anisotropy
    pts = np.r_[corners, [[(w - 1) / 2, (h - 1) / 2]]]
    for x, y in pts:
        d = H[2, 0] * x + H[2, 1] * y + H[2, 2]
        u = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / d
        v = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / d
        J = np.array([[H[0, 0] - u * H[2, 0], H[0, 1] - u * H[2, 1]],
                      [H[1, 0] - v * H[2, 0], H[1, 1] - v * H[2, 1]]]) / d
        det = np.linalg.det(J)
        if det <= 0:
            return "the estimated transform mirrors or folds the image"
        s = np.linalg.svd(J, compute_uv=False)
        if s[0] / s[1] > max_anisotropy:
            return f"the estimated transform is degenerate (anisotropy {s[0] / s[1]:.1f})"
        if not 1 / max_scale < np.sqrt(det) < max_scale:
            return f"the estimated transform has an implausible scale ({np.sqrt(det):.2f})"
    return None


def estimate(xy_moving: np.ndarray, xy_fixed: np.ndarray, shape_moving: tuple[int, int], *,
             transform: str = "homography", threshold: float = 3.0, iterations: int = 2000,
             min_inliers: int = 12, seed: int = 0, weights: np.ndarray | None = None,
             models: tuple[str, ...] = AUTO_MODELS) -> Estimate:
    """Fit a homography, affine transform or similarity moving -> fixed with RANSAC, or several
    and keep the one :func:`gric` prefers (``transform="auto"``).

    Args:
        xy_moving: (N, 2) float32 moving-image pixels (x = column, y = row, 0-based).
        xy_fixed: (N, 2) float32 corresponding fixed-image pixels.
        shape_moving: (H, W) of the moving image (for the degeneracy check).
        transform: ``"homography"``, ``"affine"``, ``"similarity"`` or ``"auto"``: fit each
            of ``models`` (same seed and threshold) and keep the lower :func:`gric` with
            ``sigma = threshold / 2``, so a model with more parameters is returned only when
            the matches support them.
        threshold: inlier transfer error, fixed pixels.
        iterations: RANSAC budget in batches of 256 minimal samples (kornia 0.9 counts
            ``max_iter`` in batches), so at most ``256 * iterations`` samples; the search stops
            earlier once the best model is certified with 99 % confidence. At the default 1,000,
            an 8 % inlier share still gets the ~110,000 samples it needs (ln 0.01 /
            ln(1 - 0.08^4) for a homography's 4-point samples).
        min_inliers: fewer is a failure.
        seed: RANSAC seed.
        weights: optional (N,) match confidences (used as sampling priority).
        models: the models ``transform="auto"`` compares (:data:`AUTO_MODELS` by default).

    Raises:
        RegistrationFailed: too few matches or inliers, or a degenerate transform.
    """
    xm = check_points(xy_moving, "moving points")
    xf = check_points(xy_fixed, "fixed points")
    if transform not in ("auto", *MODEL_DOF):
        raise ValueError(f"transform must be 'auto' or one of {sorted(MODEL_DOF)}, got "
                         f"{transform!r}")
    if transform != "auto":
        return _fit(xm, xf, shape_moving, transform, threshold, iterations, min_inliers, seed,
                    weights)
    fits, reasons = [], []
    for model in models:  # on a tie the first is kept
        try:
            fits.append(_fit(xm, xf, shape_moving, model, threshold, iterations, min_inliers,
                             seed, weights))
        except RegistrationFailed as exc:
            reasons.append(f"{model}: {exc.reason}")
    if not fits:
        raise RegistrationFailed("; ".join(reasons))
    # sigma = threshold / 2 puts gric's outlier cap at the RANSAC inlier threshold
    return min(fits, key=lambda e: gric(e.H, xm, xf, sigma=threshold / 2,
                                        dof=MODEL_DOF[e.model]))


def support_of(H: np.ndarray, xy_moving: np.ndarray, xy_fixed: np.ndarray, *,
               threshold: float = 3.0, model: str = "given") -> Estimate:
    """A given transform as an :class:`Estimate`: its inliers among matches, nothing fitted
    (e.g. the map that two georeferencings imply, judged like a RANSAC transform).

    Args:
        H: (3, 3) float64 homography, moving px -> fixed px (x = column, y = row, 0-based).
        xy_moving: (N, 2) float32 moving-image pixels of the matches.
        xy_fixed: (N, 2) float32 corresponding fixed-image pixels.
        threshold: inlier transfer error, fixed pixels.
        model: what ``H`` is, recorded in :attr:`Estimate.model`.

    Returns:
        The estimate; ``rmse_px`` is NaN without inliers.
    """
    xm = check_points(xy_moving, "moving points")
    xf = check_points(xy_fixed, "fixed points")
    if len(xm) != len(xf):
        raise ValueError(f"expected as many moving as fixed points, got {len(xm)} and {len(xf)}")
    H = np.asarray(H, np.float64) / H[2, 2]
    err = np.linalg.norm(transfer(H, xm) - xf, axis=1) if len(xm) else np.zeros(0)
    inl = err <= threshold
    rmse = float(np.sqrt((err[inl] ** 2).mean())) if inl.any() else float("nan")
    return Estimate(H=H, inliers=inl, rmse_px=rmse, model=model)


def refit(est: Estimate, xy_moving: np.ndarray, xy_fixed: np.ndarray,
          shape_moving: tuple[int, int], *, threshold: float) -> Estimate:
    """``est``'s model fitted by least squares to its own inliers, then its support among all
    the matches (:func:`support_of`): one re-estimation step from a transform found some other
    way (the optical-SAR polish, :mod:`register.polish`), so that the matches it agrees with,
    not the criterion that found it, give the final numbers. A similarity stays a similarity,
    an affine transform affine; a homography is refitted by OpenCV's least squares.

    Args:
        est: the transform and its inlier mask over the matches.
        xy_moving, xy_fixed: (N, 2) float32 pixel coordinates of the matches (x = column,
            y = row, 0-based), those ``est.inliers`` refers to.
        shape_moving: (H, W) of the moving image (for the degeneracy check,
            :func:`check_transform`).
        threshold: inlier transfer error of the result, fixed px.

    Returns:
        The refitted estimate, or ``est`` itself when it has too few inliers for its model, its
        model is not one of :data:`MODEL_DOF`, or the fit is not finite or degenerate.
    """
    xm = check_points(xy_moving, "moving points").astype(np.float64)[est.inliers]
    xf = check_points(xy_fixed, "fixed points").astype(np.float64)[est.inliers]
    if est.model not in MODEL_DOF or 2 * len(xm) < MODEL_DOF[est.model]:
        return est  # each point pair fixes two parameters
    if est.model == "similarity":
        H = _similarity_matrix(*_similarity_lstsq(_complex(xm), _complex(xf)))
    elif est.model == "affine":
        H = np.vstack([_affine_lstsq(xm, xf).T, [0.0, 0.0, 1.0]])
    else:
        H, _ = cv2.findHomography(xm, xf, 0)
    if H is None or not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12:
        return est
    H = H / H[2, 2]
    if check_transform(H, shape_moving) is not None:
        return est
    return support_of(H, xy_moving, xy_fixed, threshold=threshold, model=est.model)


def _complex(xy: np.ndarray) -> np.ndarray:
    """(N, 2) points as (N,) complex128 x + iy."""
    return xy[:, 0].astype(np.float64) + 1j * xy[:, 1]


def _similarity_lstsq(zm: np.ndarray, zf: np.ndarray) -> tuple[complex, complex]:
    """(a, b) of the similarity z -> a z + b fitted by least squares to (N,) complex point
    pairs, N >= 2."""
    (a, b), *_ = np.linalg.lstsq(np.c_[zm, np.ones(len(zm))], zf, rcond=None)
    return a, b


def _similarity_matrix(a: complex, b: complex) -> np.ndarray:
    """The (3, 3) matrix of z -> a z + b."""
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0.0, 0.0, 1.0]])


def _affine_lstsq(xm: np.ndarray, xf: np.ndarray) -> np.ndarray:
    """(3, 2) coefficients C of the affine map [x, y, 1] @ C fitted by least squares to (N, 2)
    point pairs, N >= 3."""
    coef, *_ = np.linalg.lstsq(np.c_[xm, np.ones(len(xm))], xf, rcond=None)
    return coef


def _fit(xm: np.ndarray, xf: np.ndarray, shape_moving: tuple[int, int], transform: str,
         threshold: float, iterations: int, min_inliers: int, seed: int,
         weights: np.ndarray | None) -> Estimate:
    """One RANSAC fit of :func:`estimate` with a fixed model (checked points)."""
    need = max(min_inliers, 4 if transform == "homography" else 3)
    if len(xm) < need:
        raise RegistrationFailed(f"only {len(xm)} matches survived selection; at least {need} "
                                 "are needed")
    if transform == "similarity":
        H, inl = fit_similarity(xm, xf, threshold=threshold, samples=min(256 * iterations, 4096),
                                seed=seed)
        return _checked(H, inl, xm, xf, shape_moving, transform, need)
    order = np.arange(len(xm))
    if weights is not None:
        order = np.argsort(-np.asarray(weights))  # PROSAC-style: best first
    ransac = RANSAC(model_type=transform, inl_th=threshold, max_iter=iterations, seed=seed,
                    prosac_sampling=weights is not None, batch_size=256)
    # RANSAC runs many tiny tensor ops: one thread is far faster than several fighting over
    # them (measured 0.01 s vs 0.35 s per call on 2 busy cores)
    with torch_threads(1):
        H, mask = ransac(torch.from_numpy(xm[order]).double(),
                         torch.from_numpy(xf[order]).double())
    inl = np.zeros(len(xm), bool)
    inl[order] = mask.numpy().astype(bool)
    return _checked(H.numpy().astype(np.float64), inl, xm, xf, shape_moving, transform, need)


def _checked(H: np.ndarray, inl: np.ndarray, xm: np.ndarray, xf: np.ndarray,
             shape_moving: tuple[int, int], transform: str, need: int) -> Estimate:
    """The :class:`Estimate` of a fitted ``H`` with inlier mask ``inl``, or
    :class:`~register.checks.RegistrationFailed` when it is not usable."""
    if not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12 or inl.sum() < need:
        raise RegistrationFailed(f"RANSAC found {int(inl.sum())} inliers among {len(xm)} matches;"
                                 f" at least {need} are needed")
    H = H / H[2, 2]
    why = check_transform(H, shape_moving)
    if why:
        raise RegistrationFailed(why)
    err = np.linalg.norm(transfer(H, xm[inl]) - xf[inl], axis=1)
    return Estimate(H=H, inliers=inl, rmse_px=float(np.sqrt((err ** 2).mean())), model=transform)


def fit_similarity(xy_moving: np.ndarray, xy_fixed: np.ndarray, *, threshold: float = 3.0,
                   samples: int = 2048, seed: int = 0, refits: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A similarity (rotation, uniform scale, shift) moving -> fixed by RANSAC on two-point
    samples, scored by MSAC, then refitted by least squares to its inliers ``refits`` times.

    Points are complex numbers z = x + iy; a similarity is z -> a z + b (a = scale x
    e^(i angle)), so two matches fix it and least squares over many is linear.

    Args:
        xy_moving, xy_fixed: (N, 2) float pixel coordinates of the matches (x = column,
            y = row, 0-based).
        threshold: inlier transfer error, fixed px.
        samples: two-point samples drawn (seeded).

    Returns:
        (3, 3) float64 H (NaN when fewer than two matches) and the (N,) bool inlier mask.
    """
    zm, zf = _complex(xy_moving), _complex(xy_fixed)
    n = len(zm)
    if n < 2:
        return np.full((3, 3), np.nan), np.zeros(n, bool)
    p, q = np.random.default_rng(seed).integers(0, n, (2, samples))
    ok = np.abs(zm[p] - zm[q]) > 1e-6
    a_all = (zf[p[ok]] - zf[q[ok]]) / (zm[p[ok]] - zm[q[ok]])
    b_all = zf[p[ok]] - a_all * zm[p[ok]]
    if not len(a_all):
        return np.full((3, 3), np.nan), np.zeros(n, bool)
    cost = np.empty(len(a_all))
    step = max(1, 2_000_000 // n)  # samples scored at once: memory stays ~32 MB
    for s in range(0, len(a_all), step):
        e2 = np.abs(a_all[s:s + step, None] * zm[None] + b_all[s:s + step, None] - zf[None]) ** 2
        cost[s:s + step] = np.minimum(e2, threshold ** 2).sum(1)
    best = int(np.argmin(cost))
    a, b = a_all[best], b_all[best]
    inl = np.abs(a * zm + b - zf) ** 2 <= threshold ** 2
    for _ in range(refits):  # each refit's inliers are those of (a, b)
        if inl.sum() < 2:
            break
        a, b = _similarity_lstsq(zm[inl], zf[inl])
        new = np.abs(a * zm + b - zf) ** 2 <= threshold ** 2
        if (new == inl).all():
            break
        inl = new
    return _similarity_matrix(a, b), inl
