"""Whole-slide readers: one small interface, whatever the file format.

As in TIAToolbox, every reader answers the same questions (size, pyramid, microns per pixel)
and reads regions the same way, so the rest of ldcsf never asks which format a slide is. The
interface is `SlideReader` (`slide_reader.py`); the readers are:

- `OpenSlideReader` (`openslide_reader.py`): what OpenSlide reads (Aperio .svs, Hamamatsu .ndpi,
  MIRAX .mrxs, Leica .scn, Ventana .bif, tiled pyramidal TIFF, ...), tiled TIFF pages decoded
  by tifffile with a cache of decoded tiles.
- `TiffFileReader` (`tifffile_reader.py`): OME-TIFF and TIFFs OpenSlide rejects (e.g. striped or
  untiled), through tifffile's zarr view.
- `PillowReader` (`picture_reader.py`): PNG/JPEG pictures, decoded into memory once.
- DICOM whole-slide images (`dicom.py`): a folder of one series, or any file of it, read by
  OpenSlide 4 from the series' largest level.
- MIRAX (`mirax.py`): the .mrxs file and its data folder, read by OpenSlide.

Each reader module declares its format (endings, the files of one slide, its name); `formats.py`
is their registry. `open_slide(path, mpp=None)` picks the reader it names. Regions are placed by level-0 pixels:
`read_region(location, level, size)` as OpenSlide, `read_at_mpp(location, size, mpp)` at a
physical resolution, `read_box(box, size)` for a level-0 box resized; areas outside the slide
read as white (background).
"""

from __future__ import annotations

from pathlib import Path

from .dicom import DICOM_FORMAT, open_dicom_slide
from .formats import FORMATS, SLIDE_EXTENSIONS, check_slide_path, format_of
from .mirax import MIRAX_FORMAT
from .openslide_reader import (
    OPENSLIDE_FORMAT,
    TILE_CACHE_BYTES,
    TIFF_PAGE_VENDORS,
    OpenSlideReader,
    TiledPage,
    open_openslide_or_tiff,
)
from .picture_reader import PICTURE_FORMAT, PILLOW_MAX_PIXELS, PillowReader, available_memory_bytes, check_picture_fits
from .slide_reader import (
    BACKGROUND,
    PLAUSIBLE_MPP,
    SlideReader,
    level0_pixels,
    missing_mpp_message,
    plausible_mpp,
)
from .tifffile_reader import TiffFileReader

#: File endings by reader, as the format declarations give them (`formats.FORMATS` is the registry).
OPENSLIDE_EXTENSIONS = OPENSLIDE_FORMAT.extensions + MIRAX_FORMAT.extensions
PILLOW_EXTENSIONS = PICTURE_FORMAT.extensions
DICOM_SLIDE_EXTENSIONS = DICOM_FORMAT.extensions

__all__ = [
    "BACKGROUND", "DICOM_SLIDE_EXTENSIONS", "OPENSLIDE_EXTENSIONS", "PILLOW_EXTENSIONS", "PILLOW_MAX_PIXELS",
    "FORMATS", "PLAUSIBLE_MPP", "SLIDE_EXTENSIONS", "TIFF_PAGE_VENDORS", "TILE_CACHE_BYTES", "OpenSlideReader", "PillowReader",
    "SlideReader", "TiffFileReader", "TiledPage", "available_memory_bytes", "check_mpp_override", "check_picture_fits", "level0_pixels",
    "missing_mpp_message", "open_dicom_slide", "open_slide", "plausible_mpp",
]


def open_slide(path: str | Path, mpp: float | None = None) -> SlideReader:
    """Open a slide with the reader its format needs (`formats.format_of`).

    Args:
        path: slide file (or a format's folder: a DICOM series).
        mpp: µm/px at full resolution; overrides what the file says (for files that say nothing,
            or say something wrong).
    """
    path = Path(path)
    check_slide_path(path)
    check_mpp_override(path, mpp)
    fmt = format_of(path)
    # An unknown ending is still offered to OpenSlide, which reads many files by their content.
    return (fmt.open if fmt is not None else open_openslide_or_tiff)(path, mpp)


def check_mpp_override(path: Path, mpp: float | None) -> None:
    """ValueError (one line) for an --mpp no scan can have."""
    if mpp is not None and plausible_mpp(mpp) is None:
        raise ValueError(
            f"{path}: --mpp {mpp} is not a plausible µm/px (scans lie between {PLAUSIBLE_MPP[0]} and "
            f"{PLAUSIBLE_MPP[1]}; 0.25 for 40x, 0.5 for 20x)"
        )
