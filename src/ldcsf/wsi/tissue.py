"""Finding the tissue on a slide thumbnail, and how much of each tile it covers.

H&E stains colour tissue; glass stays white or grey. Saturation separates the two well, so the
mask is an Otsu threshold on saturation (with a floor, so an empty slide does not split its
noise into "tissue"; the floor alone on a picture with too little glass for Otsu to find it),
cleaned with morphology: specks smaller than `min_object_um2` are dropped
and holes smaller than `min_hole_um2` (fat cells, tears) are filled. Sizes are physical when the
slide's µm/px is known, so the result does not depend on the thumbnail's size. Marker ink
(green, blue) is never tissue (`pen_marks`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage import filters, morphology

from .pen_marks import channel_max_min, pen_ink_mask

#: Saturation below this is never tissue, whatever Otsu says (glass, dust, faint shadows).
MIN_SATURATION = 0.07
#: Near-black pixels (pen marks, slide edges, folds under a dark label) are not tissue either.
MAX_DARKNESS = 0.12
#: Defaults: drop objects under 0.005 mm² (a ~70 µm speck), fill holes under 0.01 mm².
MIN_OBJECT_UM2 = 5_000.0
MIN_HOLE_UM2 = 10_000.0
#: Without µm/px, the same sizes as fractions of the thumbnail's area.
MIN_OBJECT_FRACTION = 1e-4
MIN_HOLE_FRACTION = 2e-4


@dataclass
class TissueMask:
    """A boolean tissue mask and its scale: mask pixel (i, j) covers level-0 pixels
    (j*downsample .. (j+1)*downsample, i*downsample .. (i+1)*downsample)."""

    mask: np.ndarray
    downsample: float

    @property
    def fraction(self) -> float:
        """Share of the whole slide that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def tissue_fractions(self, x, y, width, height) -> np.ndarray:
        """Tissue share of each level-0 box (arrays of x, y, width, height); off-slide counts as glass."""
        return box_fractions(self.mask, self.downsample, x, y, width, height)


def detect_tissue(
    thumbnail: Image.Image | np.ndarray,
    downsample: float,
    slide_mpp: float | None = None,
    min_object_um2: float = MIN_OBJECT_UM2,
    min_hole_um2: float = MIN_HOLE_UM2,
    remove_pen_marks: bool = True,
) -> TissueMask:
    """Tissue mask of a thumbnail that is `downsample` times smaller than level 0.

    With `remove_pen_marks` (the default) marker ink is not tissue; False keeps the plain
    saturation mask (for comparison).
    """
    rgb = np.asarray(thumbnail.convert("RGB") if isinstance(thumbnail, Image.Image) else thumbnail)
    saturation, value = saturation_value(rgb)
    # Marker ink is as saturated as stain: it is left out of the threshold and of the mask.
    ink = pen_ink_mask(rgb, saturation, value) if remove_pen_marks else np.zeros(saturation.shape, bool)
    stained = saturation[~ink]
    threshold = MIN_SATURATION
    if stained.size and np.ptp(stained) > 0:
        otsu = float(filters.threshold_otsu(stained))
        # Otsu parts glass from stain only where there is glass: on a picture that is all tissue
        # (a region cut from a slide, a core) it parts pale stroma from the rest, and half the
        # tissue would be lost. Its lower class must look like glass (most of it under the floor),
        # or the floor alone is used. Counted, not a median: no copy of the thumbnail's pixels.
        if 2 * np.count_nonzero(stained < MIN_SATURATION) > np.count_nonzero(stained <= otsu):
            threshold = max(otsu, MIN_SATURATION)
    mask = (saturation > threshold) & (value > MAX_DARKNESS) & ~ink

    if slide_mpp:
        um2_per_px = (downsample * slide_mpp) ** 2
        min_object_px, min_hole_px = min_object_um2 / um2_per_px, min_hole_um2 / um2_per_px
    else:
        min_object_px, min_hole_px = MIN_OBJECT_FRACTION * mask.size, MIN_HOLE_FRACTION * mask.size
    # Closing joins tissue torn into fibres at thumbnail scale before small pieces are dropped.
    mask = morphology.closing(mask, morphology.disk(1)).astype(bool)
    mask = _remove_small(morphology.remove_small_objects, mask, int(min_object_px))
    mask = _remove_small(morphology.remove_small_holes, mask, int(min_hole_px))
    return TissueMask(mask=mask, downsample=float(downsample))


def saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value in [0, 1], as `skimage.color.rgb2hsv` defines them.

    Written out because rgb2hsv also computes hue and works in float64: on a 2048² thumbnail it
    took 2.2 s of a slide's fixed cost; these two channels take about a tenth of that.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:  # floats in [0, 1], as skimage accepts (uint8, the usual case, stays integer)
        rgb = rgb.astype(np.float32, copy=False)
    high, low = channel_max_min(rgb)
    value = high.astype(np.float32) / np.float32(255) if rgb.dtype == np.uint8 else high
    difference = (high - low).astype(np.float32)
    saturation = np.divide(difference, high, out=np.zeros_like(difference), where=high > 0)
    return saturation, value


def box_fractions(mask: np.ndarray, downsample: float, x, y, width, height) -> np.ndarray:
    """Mean of `mask` over level-0 boxes, from a summed-area table (one lookup per box).

    Box edges are rounded to mask pixels; each box covers at least one mask pixel. Parts of a
    box outside the mask count as not tissue.
    """
    x, y, width, height = (np.asarray(v, dtype=np.float64) for v in (x, y, width, height))
    mask_h, mask_w = mask.shape
    integral = np.zeros((mask_h + 1, mask_w + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    x0 = np.round(x / downsample).astype(np.int64)
    y0 = np.round(y / downsample).astype(np.int64)
    x1 = np.maximum(np.round((x + width) / downsample).astype(np.int64), x0 + 1)
    y1 = np.maximum(np.round((y + height) / downsample).astype(np.int64), y0 + 1)
    area = (x1 - x0) * (y1 - y0)
    cx0, cx1 = np.clip(x0, 0, mask_w), np.clip(x1, 0, mask_w)
    cy0, cy1 = np.clip(y0, 0, mask_h), np.clip(y1, 0, mask_h)
    inside = integral[cy1, cx1] - integral[cy0, cx1] - integral[cy1, cx0] + integral[cy0, cx0]
    return inside / area


def _remove_small(function, mask: np.ndarray, size: int) -> np.ndarray:
    # scikit-image 0.26 renamed the size argument (min_size / area_threshold -> max_size).
    if size < 1:
        return mask
    if "max_size" in inspect.signature(function).parameters:
        return function(mask, max_size=size)
    keyword = "min_size" if "min_size" in inspect.signature(function).parameters else "area_threshold"
    return function(mask, **{keyword: size})
