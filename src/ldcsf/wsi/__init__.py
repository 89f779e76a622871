"""Whole-slide images: what a slide is (formats, slide info), readers with one interface, tissue detection,
tiling, pyramidal TIFF writing."""

from .readers import SLIDE_EXTENSIONS, OpenSlideReader, PillowReader, SlideReader, TiffFileReader, open_slide
from .formats import FORMATS, format_of, slide_files, slide_name
from .resize import pillow_resize
from .slide_format import SlideFormat
from .slide_info import SlideInfo, slide_info
from .tiling import TileSpec, tile_grid
from .tissue import TissueMask, detect_tissue
from .writer import write_pyramidal_tiff

__all__ = [
    "FORMATS",
    "SlideFormat",
    "SlideInfo",
    "format_of",
    "slide_files",
    "slide_info",
    "slide_name",
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
