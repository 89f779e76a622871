"""Random fields shared by the layout generator and the renderer.

All sizes are in pixels here; callers convert micrometres to pixels with their own µm/px.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth Gaussian random field with correlation length ~`scale_px`, zero mean, unit std.

    Made on a coarse grid (4 cells per correlation length, 2 for fine fields) and upsampled
    bilinearly: the cost is a few passes over the output whatever the scale.
    """
    h, w = shape
    step = scale_px / 4.0 if scale_px >= 8.0 else max(scale_px / 2.0, 1.0)
    coarse_shape = (int(np.ceil(h / step)) + 3, int(np.ceil(w / step)) + 3)
    coarse = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape, dtype=np.float32), scale_px / step, mode="wrap", truncate=3.0
    )
    coarse -= coarse.mean()
    coarse /= coarse.std() + 1e-8
    if step == 1.0:
        return coarse[:h, :w].copy()
    ys = (np.arange(h, dtype=np.float32) + 0.5) / step + 1.0
    xs = (np.arange(w, dtype=np.float32) + 0.5) / step + 1.0
    # Interpolation roughly preserves the coarse grid's unit variance (slightly less: smoothing).
    return _lerp_axis(_lerp_axis(coarse, xs, axis=1), ys, axis=0)


def _lerp_axis(grid: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of `grid` along one axis at fractional `coords` (two passes = bilinear)."""
    lower = np.floor(coords).astype(np.int64)
    frac = coords - lower
    if axis == 0:
        frac = frac[:, None]
    below = np.take(grid, lower, axis=axis)
    above = np.take(grid, lower + 1, axis=axis)
    above -= below
    above *= frac
    above += below
    return above


def oriented_fibres(
    shape: tuple[int, int],
    angle: np.ndarray,
    length_px: float,
    width_px: float,
    rng: np.random.Generator,
    n_orientations: int = 6,
) -> np.ndarray:
    """Unit-variance streaks that follow a spatially varying orientation field `angle` (radians).

    White noise is filtered with an elongated Gaussian at a few fixed orientations (done in the
    Fourier domain, where a rotated Gaussian is a closed-form expression), and each pixel blends
    the orientations nearest its local `angle`. Spatially varying anisotropic filtering has no
    direct library call; this steerable blend is the usual vectorised stand-in.
    """
    h, w = shape
    spectrum = fft.rfft2(rng.standard_normal(shape, dtype=np.float32), workers=-1)
    fy = fft.fftfreq(h).astype(np.float32)[:, None]
    fx = fft.rfftfreq(w).astype(np.float32)[None, :]
    # cos²(a - θ) = (1 + cos 2a cos 2θ + sin 2a sin 2θ) / 2: two full-size cosines, not one per θ.
    cos2a, sin2a = np.cos(2 * angle, dtype=np.float32), np.sin(2 * angle, dtype=np.float32)
    out = np.zeros(shape, np.float32)
    weight_sq = np.zeros(shape, np.float32)
    for k in range(n_orientations):
        theta = np.pi * k / n_orientations
        along = fx * np.cos(theta) + fy * np.sin(theta)
        across = -fx * np.sin(theta) + fy * np.cos(theta)
        gain = np.exp(-2 * np.pi**2 * ((length_px * along) ** 2 + (width_px * across) ** 2))
        streaks = fft.irfft2(spectrum * gain, s=shape, workers=-1).astype(np.float32, copy=False)
        streaks /= streaks.std() + 1e-8
        weight = 0.5 * (1.0 + cos2a * np.float32(np.cos(2 * theta)) + sin2a * np.float32(np.sin(2 * theta)))
        for _ in range(3):  # ** 8: a pixel sees mostly one or two orientations
            weight *= weight
        out += weight * streaks
        weight_sq += weight * weight
    # Normalise so the blend keeps unit variance wherever orientations mix.
    return out / np.sqrt(weight_sq + 1e-8)


def jittered_lattice(
    shape: tuple[int, int], spacing_px: float, jitter: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Points on a hexagonal lattice with random offsets (`jitter` as a fraction of spacing).

    A jittered lattice spaces cells evenly yet irregularly, like a tissue, at the cost of one
    array operation (a Poisson-disk sampler would be a Python loop).
    """
    h, w = shape
    row_step = spacing_px * np.sqrt(3) / 2
    ys = np.arange(rng.uniform(0, row_step), h, row_step)
    xs = np.arange(rng.uniform(0, spacing_px), w + spacing_px, spacing_px)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    xx = xx + (np.arange(len(ys))[:, None] % 2) * spacing_px / 2
    yy = yy.ravel() + rng.uniform(-jitter, jitter, yy.size) * spacing_px
    xx = xx.ravel() + rng.uniform(-jitter, jitter, xx.size) * spacing_px
    keep = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    return yy[keep], xx[keep]
