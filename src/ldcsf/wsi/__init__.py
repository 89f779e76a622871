"""Whole-slide images: readers with one interface, tissue detection, tiling, pyramidal TIFF writing."""

from .readers import SLIDE_EXTENSIONS, OpenSlideReader, PillowReader, SlideReader, TiffFileReader, open_slide
from .resize import pillow_resize
from .tiling import TileSpec, tile_grid
from .tissue import TissueMask, detect_tissue
from .writer import write_pyramidal_tiff

__all__ = [
    "SLIDE_EXTENSIONS",
    "OpenSlideReader",
    "PillowReader",
    "SlideReader",
    "TiffFileReader",
    "TileSpec",
    "TissueMask",
    "detect_tissue",
    "open_slide",
    "pillow_resize",
    "tile_grid",
    "write_pyramidal_tiff",
]
