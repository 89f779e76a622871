"""Resizing a region's RGB pixels, without torch: the reader layer needs only Pillow.

Pillow's bilinear and bicubic filters widen their support when shrinking (they antialias), the
same algorithm torch's `interpolate(..., antialias=True)` and torchvision's `v2.Resize` follow:
the two agree within one grey level for bilinear and two for bicubic (tested). torch's uint8
kernel is about 3x faster, so the slide tile dataset, which already runs torch, hands its
readers that kernel instead (`SlideReader.resizer`); `training_resize` is the same kernel in numpy,
equal to torch's bit for bit, for runs that never load torch.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
from PIL import Image

#: (rgb, width, height, interpolation) -> RGB uint8 (height, width, 3).
Resizer = Callable[[np.ndarray, int, int, str], np.ndarray]

_PILLOW_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def pillow_resize(rgb: np.ndarray, width: int, height: int, interpolation: str = "bilinear") -> np.ndarray:
    """RGB uint8 resized to (width, height) with Pillow's antialiased bilinear or bicubic filter."""
    try:
        resample = _PILLOW_FILTERS[interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be one of {sorted(_PILLOW_FILTERS)}, got {interpolation!r}") from None
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((int(width), int(height)), resample))


# torch's uint8 antialiased kernel, rewritten in numpy so that a run that never imports torch (a
# small slide on an exported runtime, `wholeslide.onnx_prediction`) still gets the very tiles
# training saw: Pillow's filters differ from it by a grey level or two in ~0.2 % of pixels, and no
# library reproduces it. The kernel follows Pillow-SIMD: per axis, filter weights normalised per
# output pixel and rounded to int16 at the highest precision that fits, a horizontal pass then a
# vertical one, each rounding to uint8. Equal to torch bit for bit (tests/test_resize.py); about
# 7x slower per tile than torch's AVX2 code, so the torch path keeps torch's (`resize_as_training`).

#: Half the support of each filter at scale 1, and the filter (Keys' cubic with a = -0.5, as torch).
_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}


def _filter(interpolation: str, x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    if interpolation == "bilinear":
        return np.clip(1.0 - x, 0.0, None)
    a = -0.5
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


@functools.lru_cache(maxsize=32)
def _axis_weights(n_in: int, n_out: int, interpolation: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(source index, int weight) per output pixel and tap, and the weights' fixed-point precision."""
    scale = n_in / n_out
    support = _SUPPORT[interpolation] * max(scale, 1.0)
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    centers = scale * (np.arange(n_out) + 0.5)
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    taps = np.minimum((centers + support + 0.5).astype(np.int64), n_in) - first
    k = np.arange(int(taps.max()))
    weights = _filter(interpolation, (k[None, :] + first[:, None] - centers[:, None] + 0.5) * invscale)
    weights = np.where(k[None, :] < taps[:, None], weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = weights / np.where(total == 0, 1.0, total)
    precision = 0  # the largest that keeps 2x the largest weight inside int16
    while precision < 22 and int(0.5 + weights.max() * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weights * (1 << precision)
    fixed = np.where(scaled < 0, scaled - 0.5, scaled + 0.5).astype(np.int32)  # C's truncation after +-0.5
    return np.minimum(first[:, None] + k[None, :], n_in - 1), fixed, precision


def _resample_rows(rgb: np.ndarray, n_out: int, interpolation: str) -> np.ndarray:
    """Resample axis 0 of uint8 (n_in, m, 3): row gathers are contiguous copies, the fast direction."""
    index, weights, precision = _axis_weights(rgb.shape[0], n_out, interpolation)
    shape = (n_out, *rgb.shape[1:])
    total = np.full(shape, 1 << (precision - 1) if precision else 0, dtype=np.int32)
    term = np.empty(shape, dtype=np.int32)
    for tap in range(index.shape[1]):
        np.multiply(rgb[index[:, tap]], weights[:, tap, None, None], out=term)
        total += term
    total >>= precision
    return np.clip(total, 0, 255, out=total).astype(np.uint8)


def training_resize(rgb: np.ndarray, width: int, height: int, interpolation: str = "bilinear") -> np.ndarray:
    """RGB uint8 resized exactly as torch's antialiased uint8 `interpolate` (training's `v2.Resize`)."""
    if interpolation not in _SUPPORT:
        raise ValueError(f"interpolation must be one of {sorted(_SUPPORT)}, got {interpolation!r}")
    out = np.asarray(rgb)
    if out.shape[1] != width:  # horizontal pass first, as torch: on the transpose, so rows are gathered
        out = _resample_rows(np.ascontiguousarray(out.transpose(1, 0, 2)), int(width), interpolation).transpose(1, 0, 2)
    if out.shape[0] != height:
        out = _resample_rows(out, int(height), interpolation)
    return np.ascontiguousarray(out)
