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

`open_slide(path, mpp=None)` picks the reader. Regions are placed by level-0 pixels:
`read_region(location, level, size)` as OpenSlide, `read_at_mpp(location, size, mpp)` at a
physical resolution, `read_box(box, size)` for a level-0 box resized; areas outside the slide
read as white (background).
"""

from __future__ import annotations

from pathlib import Path

from .openslide_reader import TILE_CACHE_BYTES, TIFF_PAGE_VENDORS, OpenSlideReader, TiledPage
from .picture_reader import PILLOW_MAX_PIXELS, PillowReader, available_memory_bytes, check_picture_fits
from .slide_reader import (
    BACKGROUND,
    PLAUSIBLE_MPP,
    SlideReader,
    level0_pixels,
    missing_mpp_message,
    plausible_mpp,
)
from .tifffile_reader import TiffFileReader

#: File endings `open_slide` and cohort folder scans recognise as slides.
OPENSLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")
PILLOW_EXTENSIONS = (".png", ".jpg", ".jpeg")
DICOM_SLIDE_EXTENSIONS = (".dcm", ".dicom")
SLIDE_EXTENSIONS = OPENSLIDE_EXTENSIONS + PILLOW_EXTENSIONS + DICOM_SLIDE_EXTENSIONS

__all__ = [
    "BACKGROUND", "DICOM_SLIDE_EXTENSIONS", "OPENSLIDE_EXTENSIONS", "PILLOW_EXTENSIONS", "PILLOW_MAX_PIXELS",
    "PLAUSIBLE_MPP", "SLIDE_EXTENSIONS", "TIFF_PAGE_VENDORS", "TILE_CACHE_BYTES", "OpenSlideReader", "PillowReader",
    "SlideReader", "TiffFileReader", "TiledPage", "available_memory_bytes", "check_picture_fits", "level0_pixels",
    "missing_mpp_message", "open_dicom_slide", "open_slide", "plausible_mpp",
]


def open_slide(path: str | Path, mpp: float | None = None) -> SlideReader:
    """Open a slide with the reader its format needs.

    Args:
        path: slide file.
        mpp: µm/px at full resolution; overrides what the file says (for files that say nothing,
            or say something wrong).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: slide not found")
    if path.is_dir() and any(p.suffix.lower() in DICOM_SLIDE_EXTENSIONS for p in path.iterdir()):
        return open_dicom_slide(path, mpp)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a slide file")
    if not path.is_file():  # a pipe or device would block the reader forever
        raise ValueError(f"{path}: not a regular file (a pipe or device?); give the slide file itself")
    if mpp is not None and plausible_mpp(mpp) is None:
        raise ValueError(
            f"{path}: --mpp {mpp} is not a plausible µm/px (scans lie between {PLAUSIBLE_MPP[0]} and "
            f"{PLAUSIBLE_MPP[1]}; 0.25 for 40x, 0.5 for 20x)"
        )
    suffix = path.suffix.lower()
    if suffix in PILLOW_EXTENSIONS:
        return PillowReader(path, mpp)
    if suffix in DICOM_SLIDE_EXTENSIONS:
        return open_dicom_slide(path, mpp)
    if path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        return TiffFileReader(path, mpp)
    try:
        return OpenSlideReader(path, mpp)
    except ValueError:
        if suffix not in (".tif", ".tiff"):
            raise
    # A TIFF OpenSlide rejects (untiled, striped, unusual layout) may still be readable by tifffile.
    return TiffFileReader(path, mpp)


def open_dicom_slide(path: Path, mpp: float | None = None) -> "OpenSlideReader":
    """A DICOM WSI series (a folder, or one of its files), read by OpenSlide from its largest level."""
    from .dicom import refusal_message, series_of

    series = series_of(path)
    try:
        reader = OpenSlideReader(series.main_file, mpp)
    except ValueError as err:
        raise ValueError(refusal_message(series.main_file, str(err).split(": ", 1)[-1])) from None
    reader.path = Path(path)
    return reader

