"""Resizing a region's RGB pixels, without torch: the reader layer needs only Pillow.

Pillow's bilinear and bicubic filters widen their support when shrinking (they antialias), the
same algorithm torch's `interpolate(..., antialias=True)` and torchvision's `v2.Resize` follow:
the two agree within one grey level for bilinear and two for bicubic (tested). torch's uint8
kernel is about 3x faster, so the slide tile dataset, which already runs torch, hands its
readers that kernel instead (`SlideReader.resizer`).
"""

from __future__ import annotations

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
