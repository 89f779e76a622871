"""Ground-truth tissue layouts: class maps of a caricatured tumour section with known composition.

A layout is a uint8 array with one class per pixel (see `CLASSES`). Structures are sized in
micrometres, so a layout made at 0.5 µm/px shows the same tissue as one made at 1.0 µm/px,
only sampled twice as finely. Class areas are set by quantile thresholds on smooth random fields,
so the requested composition is met to the pixel rather than on average.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .noise import smooth_noise

BACKGROUND, STROMA, TUMOR, NECROSIS, NORMAL = 0, 1, 2, 3, 4
#: Class names as the manifest's frac_<class> columns spell them (same as the WSSS4LUAD mask scheme);
#: each but background is a label of `ldcsf.labels` or its synonym ("normal": non_tumor).
CLASSES: tuple[str, ...] = ("background", "stroma", "tumor", "necrosis", "normal")

#: A label map PNG colour per class, for people looking at layouts.
CLASS_COLOURS = np.array(
    [[255, 255, 255], [236, 130, 170], [110, 50, 160], [250, 210, 60], [90, 180, 120]], dtype=np.uint8
)


def make_layout(
    height: int,
    width: int,
    seed: int = 0,
    mpp: float = 1.0,
    stroma_fraction: float = 0.4,
    necrosis_fraction: float = 0.05,
    normal_fraction: float = 0.15,
    tissue_fraction: float = 0.7,
) -> np.ndarray:
    """A (height, width) uint8 class map; fractions of stroma/necrosis/normal are of the tissue area.

    Tumour takes the rest of the tissue: 1 - stroma - necrosis - normal. The tissue is a smooth blob
    covering `tissue_fraction` of the image; normal parenchyma forms one or two lobes at its side;
    tumour nests cluster in beds and are separated by stroma bands; necrosis sits in the middle of
    the widest tumour regions.
    """
    _check_fractions(height, width, mpp, stroma_fraction, necrosis_fraction, normal_fraction, tissue_fraction)
    rng = np.random.default_rng(seed)
    shape = (height, width)
    um = 1.0 / mpp  # pixels per micrometre
    layout = np.zeros(shape, np.uint8)

    tissue = _tissue_outline(shape, tissue_fraction, um, rng)
    layout[tissue] = STROMA

    # Normal parenchyma: a broad field tilted towards one side, so it forms lobes, not islands.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.ogrid[0:height, 0:width]
    ramp = ((np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)).astype(np.float32)
    lobe_field = 3.0 * ramp + 0.6 * smooth_noise(shape, 250 * um, rng)
    normal = _top_fraction(lobe_field, tissue, normal_fraction)
    layout[normal] = NORMAL

    # Tumour (with its necrosis): nests at ~40 µm scale, clustered by a ~200 µm "tumour bed" field.
    remaining = tissue & ~normal
    nest_field = smooth_noise(shape, 40 * um, rng) + 0.8 * smooth_noise(shape, 200 * um, rng)
    tumor_share = (1.0 - stroma_fraction - normal_fraction) / max(1.0 - normal_fraction, 1e-9)
    tumor = _top_fraction(nest_field, remaining, tumor_share)
    layout[tumor] = TUMOR

    # Necrosis: deepest inside tumour (distance to its edge), with a ragged border.
    necrosis_share = necrosis_fraction / max(1.0 - stroma_fraction - normal_fraction, 1e-9)
    if necrosis_share > 0 and tumor.any():
        depth_um = inside_distance(tumor, step=max(int(2 * um), 1)) * mpp
        necrosis = _top_fraction(depth_um + 12.0 * smooth_noise(shape, 30 * um, rng), tumor, necrosis_share)
        layout[necrosis] = NECROSIS
    return layout


def class_pixel_counts(layout: np.ndarray) -> dict[str, int]:
    counts = np.bincount(layout.ravel(), minlength=len(CLASSES))
    return {name: int(counts[i]) for i, name in enumerate(CLASSES)}


def tissue_fractions(layout: np.ndarray) -> dict[str, float]:
    """Fraction of the tissue (non-background) area per tissue class."""
    counts = class_pixel_counts(layout)
    tissue = sum(v for k, v in counts.items() if k != "background")
    return {k: (v / tissue if tissue else 0.0) for k, v in counts.items() if k != "background"}


def colour_layout(layout: np.ndarray) -> np.ndarray:
    """RGB picture of a class map (white background, one colour per class)."""
    return CLASS_COLOURS[layout]


def _tissue_outline(shape: tuple[int, int], fraction: float, um: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth blob: a centred elliptic bump deformed by broad and fine noise, cut at a quantile."""
    if fraction >= 1.0:
        return np.ones(shape, bool)
    h, w = shape
    cy, cx = h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
    yy, xx = np.ogrid[0:h, 0:w]
    radial = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2
    score = -radial + 0.35 * smooth_noise(shape, min(h, w) / 5, rng) + 0.05 * smooth_noise(shape, 60 * um, rng)
    return _top_fraction(score, np.ones(shape, bool), fraction)


def _top_fraction(field: np.ndarray, within: np.ndarray, fraction: float) -> np.ndarray:
    """The `fraction` of pixels of `within` where `field` is highest (exact count, not on average)."""
    n = int(round(float(np.clip(fraction, 0.0, 1.0)) * int(within.sum())))
    if n <= 0:
        return np.zeros_like(within)
    values = field[within]
    if n >= values.size:
        return within.copy()
    threshold = np.partition(values, values.size - n)[values.size - n]
    return within & (field >= threshold)


def inside_distance(mask: np.ndarray, step: int) -> np.ndarray:
    """Distance (px) to the outside of `mask`, computed on a `step`-subsampled grid for speed (coarse)."""
    coarse = ndimage.distance_transform_edt(mask[::step, ::step]) * step
    rows = np.minimum(np.arange(mask.shape[0]) // step, coarse.shape[0] - 1)
    cols = np.minimum(np.arange(mask.shape[1]) // step, coarse.shape[1] - 1)
    return coarse[rows][:, cols].astype(np.float32)


def _check_fractions(height, width, mpp, stroma, necrosis, normal, tissue) -> None:
    if height < 8 or width < 8:
        raise ValueError(f"layout size {height}x{width}: must be at least 8x8 pixels")
    if mpp <= 0:
        raise ValueError(f"mpp {mpp}: must be positive (micrometres per pixel)")
    for name, value in (("stroma", stroma), ("necrosis", necrosis), ("normal", normal), ("tissue", tissue)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}_fraction {value}: must be between 0 and 1")
    if stroma + necrosis + normal > 1.0 + 1e-9:
        raise ValueError(
            f"stroma_fraction + necrosis_fraction + normal_fraction = {stroma + necrosis + normal:.3f}: must not exceed 1"
        )
    if tissue == 0.0:
        raise ValueError("tissue_fraction 0: a layout needs some tissue")
