"""A caricature of H&E staining painted onto a layout.

Each pixel gets an amount of haematoxylin (H, nuclei: purple-blue) and eosin (E, cytoplasm and
collagen: pink). Light passing through the section loses intensity per the Beer–Lambert law,
so the picture is made in optical density (OD = -log(I / I0)), where stains add linearly:
OD_rgb = H * h_vector + E * e_vector, then I = I0 * exp(-OD). Nuclei, fibres and sizes are set in
micrometres and converted with `mpp`, so a slide at 0.5 µm/px and a tile at 1.0 µm/px show the
same tissue at two sampling rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import rgb_from_hed

from .layout import NECROSIS, NORMAL, STROMA, TUMOR, inside_distance
from .noise import jittered_lattice, oriented_fibres, smooth_noise

#: Ruifrok & Johnston (2001) stain OD vectors as scikit-image ships them, nudged towards the hues
#: of typical modern scans: haematoxylin more purple than blue, eosin pinker than magenta.
H_VECTOR = rgb_from_hed[0] + np.array([-0.1, 0.05, 0.0])
E_VECTOR = rgb_from_hed[1] + np.array([0.25, -0.1, 0.33])


@dataclass(frozen=True)
class StainStyle:
    """One staining run: stain vectors and strengths differ a little between labs and batches."""

    h_vector: np.ndarray
    e_vector: np.ndarray
    h_strength: float
    e_strength: float
    background_od: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> StainStyle:
        def jitter(v: np.ndarray) -> np.ndarray:
            v = np.clip(v + rng.normal(0, 0.03, 3), 0.02, None)
            return (v / np.linalg.norm(v)).astype(np.float32)

        return cls(
            h_vector=jitter(H_VECTOR),
            e_vector=jitter(E_VECTOR),
            h_strength=float(rng.uniform(0.85, 1.15)),
            e_strength=float(rng.uniform(0.8, 1.2)),
            background_od=float(rng.uniform(0.02, 0.05)),
        )


@dataclass(frozen=True)
class _Nuclei:
    """How one kind of cell's nuclei look: sizes in µm (semi-axes), H amount, spacing."""

    spacing_um: float
    keep: float  # fraction of lattice sites that hold a nucleus
    jitter: float
    major_um: tuple[float, float]
    minor_ratio: tuple[float, float]
    darkness: tuple[float, float]
    rim: float = 0.0  # extra H at the nuclear membrane (vesicular nuclei)


_TUMOR_NUCLEI = _Nuclei(9.0, 0.95, 0.4, (3.0, 6.5), (0.55, 0.95), (0.7, 1.4), rim=0.4)
_NORMAL_NUCLEI = _Nuclei(18.0, 0.92, 0.12, (3.2, 3.7), (0.85, 1.0), (0.75, 0.95), rim=0.3)
_SPINDLE_NUCLEI = _Nuclei(22.0, 0.45, 0.45, (4.5, 7.5), (0.18, 0.3), (0.9, 1.3))
_LYMPHOCYTES = _Nuclei(30.0, 0.15, 0.5, (2.2, 2.8), (0.85, 1.0), (1.6, 2.0))
_KARYORRHEXIS = _Nuclei(4.0, 0.3, 0.5, (0.5, 1.5), (0.5, 1.0), (1.2, 2.0))
_GHOST_NUCLEI = _Nuclei(10.0, 0.4, 0.4, (2.5, 4.0), (0.6, 1.0), (0.1, 0.2))


def render_he(layout: np.ndarray, seed: int = 0, mpp: float = 0.5) -> np.ndarray:
    """An (H, W, 3) uint8 RGB H&E caricature of a class map `layout` at `mpp` µm per pixel."""
    layout = np.asarray(layout)
    if layout.ndim != 2 or layout.dtype != np.uint8:
        raise ValueError(f"layout: expected a 2-D uint8 class map, got shape {layout.shape} dtype {layout.dtype}")
    if mpp <= 0:
        raise ValueError(f"mpp {mpp}: must be positive (micrometres per pixel)")
    rng = np.random.default_rng(seed)
    um = 1.0 / mpp
    shape = layout.shape
    style = StainStyle.sample(rng)

    masks = {c: layout == c for c in (STROMA, TUMOR, NECROSIS, NORMAL)}
    # Fibre direction drifts over ~150 µm; spindle nuclei follow it.
    angle = 0.6 * np.pi * smooth_noise(shape, 400 * um, rng)
    # Glandular lumens: small empty spaces, only well inside tumour (not at the nest edge).
    lumen = masks[TUMOR] & (smooth_noise(shape, 6 * um, rng) > 2.0)
    lumen &= inside_distance(masks[TUMOR], step=max(int(2 * um), 1)) > 12 * um
    hepatic_sinusoid = masks[NORMAL] & (np.abs(smooth_noise(shape, 9 * um, rng)) < 0.07)

    h_map, e_map = _ground_substance(masks, lumen, hepatic_sinusoid, angle, um, rng)
    nuclei_h = np.zeros(shape, np.float32)
    _stamp_class(nuclei_h, layout == TUMOR, ~lumen, _TUMOR_NUCLEI, None, um, rng)
    _stamp_class(nuclei_h, masks[NORMAL], ~hepatic_sinusoid, _NORMAL_NUCLEI, None, um, rng)
    _stamp_class(nuclei_h, masks[STROMA], None, _SPINDLE_NUCLEI, angle, um, rng)
    _stamp_class(nuclei_h, masks[STROMA], None, _LYMPHOCYTES, None, um, rng)
    _stamp_class(nuclei_h, masks[NECROSIS], None, _KARYORRHEXIS, None, um, rng)
    _stamp_class(nuclei_h, masks[NECROSIS], None, _GHOST_NUCLEI, None, um, rng)
    # Chromatin is granular: modulate nuclear stain with fine noise.
    chromatin = _blurred(rng.standard_normal(shape, dtype=np.float32), 0.4 * um)
    chromatin = 0.85 + 0.25 * chromatin / (chromatin.std() + 1e-8)
    nuclei_h = np.clip(nuclei_h, 0, 2.2) * np.clip(chromatin, 0.4, 1.4)
    h_map += nuclei_h
    e_map += 0.3 * nuclei_h  # nucleoplasm takes some eosin too: nuclei look purple, not navy
    e_map *= 1.0 - 0.25 * np.clip(nuclei_h, 0, 1)  # nuclei displace some cytoplasm

    # Optical blur (which also softens class boundaries) and uneven illumination. Blur is linear,
    # so blurring the two stain maps equals blurring the composed three-channel density.
    shading = 1.0 + 0.04 * smooth_noise(shape, 400 * um, rng)
    h_map = _blurred(h_map, 0.5 * um) * (style.h_strength * shading)
    e_map = _blurred(e_map, 0.5 * um) * (style.e_strength * shading)
    rgb = np.empty((*shape, 3), np.uint8)
    for c in range(3):  # per channel keeps the float temporaries at one plane
        od = h_map * style.h_vector[c] + e_map * style.e_vector[c] + style.background_od
        intensity = 255.0 * np.exp(-od) + rng.standard_normal(shape, dtype=np.float32) * 2.0  # sensor noise
        rgb[..., c] = np.clip(intensity, 0, 255)
    return rgb


def _ground_substance(masks, lumen, sinusoid, angle, um, rng) -> tuple[np.ndarray, np.ndarray]:
    """H and E amounts of everything but nuclei: collagen, cytoplasm, necrotic debris."""
    shape = lumen.shape
    h_map = np.zeros(shape, np.float32)
    e_map = np.zeros(shape, np.float32)

    # Stroma: wavy collagen bundles with pale clefts between them.
    stroma = masks[STROMA]
    if stroma.any():
        fibres = oriented_fibres(shape, angle, length_px=20 * um, width_px=0.6 * um, rng=rng)
        density = 1.2 + 0.2 * smooth_noise(shape, 60 * um, rng)
        e_stroma = density * (0.75 + 0.35 * np.tanh(1.2 * fibres))
        e_stroma *= np.where(fibres < -1.5, 0.4, 1.0)  # clefts
        e_map[stroma] = e_stroma[stroma]
        h_map[stroma] = 0.03

    # Tumour: scant, amphophilic (slightly purple) cytoplasm; glandular lumens are empty.
    tumor = masks[TUMOR]
    mottle = smooth_noise(shape, 3 * um, rng)
    e_map[tumor] = (0.6 + 0.1 * mottle)[tumor]
    h_map[tumor] = (0.35 + 0.06 * mottle)[tumor]
    e_map[lumen] = 0.03
    h_map[lumen] = 0.0

    # Necrosis: pale, smudgy eosinophilic debris with a basophilic dust and cracks.
    necrosis = masks[NECROSIS]
    if necrosis.any():
        blotch = smooth_noise(shape, 10 * um, rng)
        e_map[necrosis] = (1.05 + 0.15 * blotch + 0.12 * mottle)[necrosis]
        h_map[necrosis] = (0.1 + 0.06 * smooth_noise(shape, 2 * um, rng))[necrosis]
        cracks = necrosis & (smooth_noise(shape, 4 * um, rng) > 1.6)  # small pale holes
        e_map[cracks] *= 0.3
        h_map[cracks] *= 0.3

    # Normal parenchyma (hepatocyte-like plates): granular pink cytoplasm, pale sinusoids between plates.
    normal = masks[NORMAL]
    if normal.any():
        granules = smooth_noise(shape, 1.0 * um, rng)
        e_map[normal] = (0.9 + 0.12 * granules)[normal]
        h_map[normal] = 0.1
        e_map[sinusoid] = 0.1
        h_map[sinusoid] = 0.02

    return np.maximum(h_map, 0), np.maximum(e_map, 0)


def _stamp_class(target, region, allowed, kind: _Nuclei, angle_field, um, rng) -> None:
    """Place nuclei of one `kind` on a jittered lattice, keeping sites inside `region` (and `allowed`)."""
    if not region.any():
        return
    ys, xs = jittered_lattice(region.shape, kind.spacing_um * um, kind.jitter, rng)
    iy, ix = ys.astype(np.int64), xs.astype(np.int64)
    inside = region[iy, ix] & (rng.random(ys.size) < kind.keep)
    if allowed is not None:
        inside &= allowed[iy, ix]
    ys, xs, iy, ix = ys[inside], xs[inside], iy[inside], ix[inside]
    n = ys.size
    if n == 0:
        return
    major = rng.uniform(*kind.major_um, n) * um
    minor = major * rng.uniform(*kind.minor_ratio, n)
    if angle_field is not None:
        angle = angle_field[iy, ix] + rng.normal(0, 0.15, n)
    else:
        angle = rng.uniform(0, np.pi, n)
    stamp_ellipses(target, ys, xs, major, minor, angle, rng.uniform(*kind.darkness, n), rim=kind.rim)


def stamp_ellipses(
    target: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    major: np.ndarray,
    minor: np.ndarray,
    angle: np.ndarray,
    weight: np.ndarray,
    rim: float = 0.0,
    chunk: int = 4096,
) -> None:
    """Add soft-edged filled ellipses (semi-axes in px) to `target` in place, all at once.

    Every ellipse is evaluated on a square window around its centre as one (N, k, k) array and
    scattered with `np.add.at`, so thousands of nuclei cost a few array operations instead of a
    Python loop over `skimage.draw.ellipse` calls.
    """
    h, w = target.shape
    radius = int(np.ceil(float(major.max()) + 1.5))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    flat_target = target.reshape(-1)
    for start in range(0, ys.size, chunk):
        sl = slice(start, start + chunk)
        cy, cx = np.floor(ys[sl]).astype(np.int64), np.floor(xs[sl]).astype(np.int64)
        dy = offsets[None, :, None] - (ys[sl] - cy).astype(np.float32)[:, None, None]
        dx = offsets[None, None, :] - (xs[sl] - cx).astype(np.float32)[:, None, None]
        cos, sin = np.cos(angle[sl])[:, None, None], np.sin(angle[sl])[:, None, None]
        u = (dx * cos + dy * sin) / major[sl][:, None, None]
        v = (-dx * sin + dy * cos) / minor[sl][:, None, None]
        r = np.sqrt(u * u + v * v)
        # Soft edge about one pixel wide, whatever the nucleus size.
        edge = np.clip((1.0 - r) * minor[sl][:, None, None] + 0.5, 0.0, 1.0)
        value = edge * (1.0 + rim * np.exp(-(((r - 0.85) / 0.12) ** 2)))
        value *= weight[sl][:, None, None]
        py = cy[:, None, None] + offsets.astype(np.int64)[None, :, None]
        px = cx[:, None, None] + offsets.astype(np.int64)[None, None, :]
        keep = (value > 0.01) & (py >= 0) & (py < h) & (px >= 0) & (px < w)
        np.add.at(flat_target, (py * w + px)[keep], value[keep].astype(target.dtype))


def _blurred(image: np.ndarray, sigma_px: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma_px, truncate=3.0) if sigma_px > 0.3 else image
