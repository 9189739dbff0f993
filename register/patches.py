"""64x64 patches, sampled in the frame of the current transform hypothesis.

The moving image is first resampled into the fixed image's frame under the hypothesis
(:func:`warp_to_frame`), so that rotation and scale are normalised before scoring; a moving
patch is then a plain crop of that resampled image at a fixed-frame position. Patches are
returned as uint8 arrays (compact for caching) and turned into float tensors by
:func:`to_tensor`.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .checks import check_homography, check_points
from .config import PATCH_SIZE
from .geometry import transform_scale


def warp_image(image: np.ndarray, H: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a moving image into the fixed frame, anti-aliased when the warp shrinks it.

    Args:
        image: (h, w) float32 moving image.
        H: (3, 3) homography mapping moving px -> fixed px (x = column, y = row, 0-based).
        shape: (H, W) of the fixed frame.

    Returns:
        (H, W) float32 image (0 outside the moving image).
    """
    H = check_homography(H)
    scale = transform_scale(H)
    src = cv2.GaussianBlur(image, (0, 0), 0.45 / scale) if scale < 0.8 else image
    return cv2.warpPerspective(src.astype(np.float32), H, (int(shape[1]), int(shape[0])),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)


def warp_to_frame(image: np.ndarray, mask: np.ndarray, H: np.ndarray,
                  shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample a moving image and its mask into the fixed frame (:func:`warp_image`).

    Args:
        image: (h, w) float32 moving image.
        mask: (h, w) bool validity of the moving image.
        H: (3, 3) homography mapping moving px -> fixed px (x = column, y = row, 0-based).
        shape: (H, W) of the fixed frame.

    Returns:
        (H, W) float32 image and (H, W) bool mask (False outside the moving image).
    """
    H = check_homography(H)
    out = warp_image(image, H, shape)
    m = cv2.warpPerspective(mask.astype(np.uint8) * 255, H, (int(shape[1]), int(shape[0])),
                            flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 250
    return out, m


def crop_patches(image: np.ndarray, xy: np.ndarray, *, size: int = PATCH_SIZE,
                 affine: np.ndarray | None = None) -> np.ndarray:
    """Crop patches centred at ``xy``.

    Args:
        image: (H, W) float32 image in [0, 1].
        xy: (N, 2) float32 centres, pixel coordinates (x = column, y = row, 0-based).
        size: patch side in pixels.
        affine: optional (N, 2, 2) or (2, 2) linear maps from patch offsets to image offsets
            (rotation / scale about each centre); None = plain crop.

    Returns:
        (N, size, size) uint8 patches (zeros outside the image).
    """
    xy = check_points(xy, "patch centres")
    n = len(xy)
    out = np.zeros((n, size, size), np.uint8)
    img8 = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    c = (size - 1) / 2.0
    if affine is None:
        # zero padding, so that both paths give zeros outside the image
        padded = cv2.copyMakeBorder(img8, size, size, size, size, cv2.BORDER_CONSTANT, value=0)
        for i, (x, y) in enumerate(xy):
            out[i] = cv2.getRectSubPix(padded, (size, size), (float(x) + size, float(y) + size))
        return out
    A = np.broadcast_to(np.asarray(affine, np.float64), (n, 2, 2))
    for i, (x, y) in enumerate(xy):
        # patch pixel u maps to image point xy + A (u - c)
        M = np.c_[A[i], np.array([x, y]) - A[i] @ np.array([c, c])]
        out[i] = cv2.warpAffine(img8, M, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def to_tensor(patches: np.ndarray) -> torch.Tensor:
    """(N, S, S) uint8 patches -> (N, 1, S, S) float32 tensor in [0, 1] (on the CPU)."""
    return to_unit_float(torch.from_numpy(np.ascontiguousarray(patches)))


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """(N, S, S) uint8 tensor -> (N, 1, S, S) float32 in [0, 1], on ``x``'s device (where
    :func:`register.score.embed` converts the patches it copied there)."""
    return x.float().div_(255.0).unsqueeze(1)
