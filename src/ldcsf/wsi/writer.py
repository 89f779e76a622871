"""Write an RGB image as a tiled, pyramidal TIFF that OpenSlide opens as a slide.

OpenSlide's generic-TIFF reader wants: every level tiled, levels as successive top-level
directories (largest first), and the physical resolution in the TIFF resolution tags (it reports
`openslide.mpp-x` from XResolution when the unit is centimetres). tifffile writes all of this;
the file appears under its final name only once it is complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..utils.atomic import atomic_path

#: Smallest level side worth writing: below one tile a further level saves nothing.
_MIN_LEVEL_SIDE = 64


def pyramid_levels(width: int, height: int, tile_size: int) -> int:
    """Number of levels (each half the previous) until the image fits in about one tile."""
    levels = 1
    while max(width, height) / 2 ** (levels - 1) > tile_size and min(width, height) / 2**levels >= _MIN_LEVEL_SIDE:
        levels += 1
    return levels


def write_pyramidal_tiff(
    path: str | Path,
    rgb: np.ndarray,
    mpp: float,
    tile_size: int = 256,
    compression: str | None = "jpeg",
    levels: int | None = None,
    quality: int = 90,
) -> Path:
    """Write `rgb` (H, W, 3 uint8) at `mpp` µm/px as a tiled pyramid; return the path.

    Args:
        path: the .tif/.tiff file to write (atomically).
        rgb: full-resolution image.
        mpp: microns per pixel of `rgb`, stored in the resolution tags (pixels per centimetre).
        tile_size: TIFF tile side (a multiple of 16).
        compression: "jpeg" (like most scanners), "deflate", "lzw" or None.
        levels: pyramid levels including full resolution; default halves until about one tile.
        quality: JPEG quality.
    """
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if tile_size % 16:
        raise ValueError(f"tile_size must be a multiple of 16 (TIFF rule), got {tile_size}")
    if not mpp or mpp <= 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    height, width = rgb.shape[:2]
    levels = levels or pyramid_levels(width, height, tile_size)
    pixels_per_cm = 1e4 / mpp
    codec_args = {"level": quality} if compression == "jpeg" else None
    path = Path(path)
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=rgb.nbytes > 2**31) as tif:
            level_image = rgb
            for level in range(levels):
                scale = 2**level
                tif.write(
                    level_image,
                    tile=(tile_size, tile_size),
                    photometric="rgb",
                    compression=compression,
                    compressionargs=codec_args,
                    # level 0 is the image; the others are reduced-resolution copies of it
                    subfiletype=0 if level == 0 else 1,
                    resolution=(pixels_per_cm / scale, pixels_per_cm / scale),
                    resolutionunit="CENTIMETER",
                    metadata=None,
                )
                if level + 1 < levels:
                    # Box filter (mean of 2x2): the usual way scanners build their pyramids.
                    level_image = np.asarray(Image.fromarray(level_image).reduce(2))
    return path
