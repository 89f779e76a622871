"""Pen ink on a slide: green, blue and black marker strokes that are not tissue.

Pathologists outline regions with markers on the glass. Ink is strongly coloured, so a
saturation threshold calls it tissue. H&E stains lie between purple and pink (hue about 250-360°
and 0-30°); marker inks sit elsewhere: green/teal at 90-200°, blue at 200-255°. Hematoxylin can
reach 235-255° too, but it is pale where it is that blue (value above ~0.75 at thumbnail scale),
while blue ink is dark. Measured on the real TCGA section with green and blue ink
(docs/reliability.md) and on H&E tiles from six sources (at most 2 % of their stained pixels
flagged, scattered single nuclei that the tissue mask's hole filling restores).
"""

from __future__ import annotations

import numpy as np

GREEN_HUE = (90.0, 200.0)
BLUE_HUE = (200.0, 255.0)
#: Least saturation of a green ink pixel, and of a blue one (pale blue is background glass).
GREEN_MIN_SATURATION = 0.25
BLUE_MIN_SATURATION = 0.30
#: Blue ink is darker than this value; hematoxylin that blue is brighter.
BLUE_MAX_VALUE = 0.75


def channel_max_min(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel max and min over the 3 channels of (..., 3): elementwise over the channel planes,
    several times faster than numpy's `max(axis=-1)`, which loops over the 3 values pixel by pixel."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees [0, 360) of an RGB uint8 image (0 where the pixel is grey)."""
    rgb = rgb.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = channel_max_min(rgb)
    delta = np.where(high > low, high - low, 1.0)
    hue = np.where(high == r, ((g - b) / delta) % 6.0, np.where(high == g, (b - r) / delta + 2.0, (r - g) / delta + 4.0))
    return np.where(high > low, hue * 60.0, 0.0)


def pen_ink_mask(rgb: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """True where a pixel looks like marker ink (saturation and value in [0, 1], as HSV).

    Hue is computed only for pixels saturated enough to be ink (at most those of the tissue),
    not for the glass that makes up most of a thumbnail: the same mask, several times faster.
    """
    saturation = np.asarray(saturation)
    candidates = saturation > min(GREEN_MIN_SATURATION, BLUE_MIN_SATURATION)
    ink = np.zeros(saturation.shape, dtype=bool)
    if not candidates.any():
        return ink
    hue = hue_degrees(np.asarray(rgb)[candidates])  # (n, 3) pixels -> (n,) hues
    sat, val = saturation[candidates], np.asarray(value)[candidates]
    green = (hue >= GREEN_HUE[0]) & (hue < GREEN_HUE[1]) & (sat > GREEN_MIN_SATURATION)
    blue = (hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (sat > BLUE_MIN_SATURATION) & (val < BLUE_MAX_VALUE)
    ink[candidates] = green | blue
    return ink
