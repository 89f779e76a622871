"""Random fields shared by the layout generator and the renderer.

All sizes are in pixels here; callers convert micrometres to pixels with their own µm/px.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth Gaussian random field with correlation length ~`scale_px`, zero mean, unit std.

    Made on a coarse grid (4 cells per correlation length) and upsampled bilinearly, so its cost
    does not grow with the scale: a 4096² field of any scale takes a fraction of a second.
    """
    h, w = shape
    step = max(scale_px / 4.0, 1.0)
    coarse_shape = (int(np.ceil(h / step)) + 3, int(np.ceil(w / step)) + 3)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), scale_px / step, mode="wrap")
    if step > 1.0:
        # Bilinear upsampling onto exactly (h, w): sample the coarse grid at fractional coordinates.
        ys = (np.arange(h, dtype=np.float32) + 0.5) / step + 1.0
        xs = (np.arange(w, dtype=np.float32) + 0.5) / step + 1.0
        field = _bilinear(coarse, ys, xs)
    else:
        field = coarse[:h, :w]
    field = field - field.mean()
    return (field / (field.std() + 1e-8)).astype(np.float32)


def _bilinear(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Separable bilinear interpolation of `grid` at the outer product of row and column coordinates."""
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    rows0, rows1 = grid[y0], grid[y0 + 1]
    top = rows0[:, x0] * (1 - fx) + rows0[:, x0 + 1] * fx
    bottom = rows1[:, x0] * (1 - fx) + rows1[:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def oriented_fibres(
    shape: tuple[int, int],
    angle: np.ndarray,
    length_px: float,
    width_px: float,
    rng: np.random.Generator,
    n_orientations: int = 8,
) -> np.ndarray:
    """Unit-variance streaks that follow a spatially varying orientation field `angle` (radians).

    White noise is filtered with an elongated Gaussian at a few fixed orientations (done in the
    Fourier domain, where a rotated Gaussian is a closed-form expression), and each pixel blends
    the orientations nearest its local `angle`. Spatially varying anisotropic filtering has no
    direct library call; this steerable blend is the usual vectorised stand-in.
    """
    h, w = shape
    spectrum = fft.rfft2(rng.standard_normal(shape).astype(np.float32), workers=-1)
    fy = fft.fftfreq(h).astype(np.float32)[:, None]
    fx = fft.rfftfreq(w).astype(np.float32)[None, :]
    out = np.zeros(shape, np.float32)
    weight_sq = np.zeros(shape, np.float32)
    for k in range(n_orientations):
        theta = np.pi * k / n_orientations
        along = fx * np.cos(theta) + fy * np.sin(theta)
        across = -fx * np.sin(theta) + fy * np.cos(theta)
        gain = np.exp(-2 * np.pi**2 * ((length_px * along) ** 2 + (width_px * across) ** 2))
        streaks = fft.irfft2(spectrum * gain, s=shape, workers=-1).astype(np.float32)
        streaks /= streaks.std() + 1e-8
        weight = np.cos(angle - theta) ** 2
        weight **= 8  # sharp selection: a pixel sees mostly one or two orientations
        out += weight * streaks
        weight_sq += weight**2
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
