"""Whole-slide readers: one small interface, whatever the file format.

As in TIAToolbox, every reader answers the same questions (size, pyramid, microns per pixel)
and reads regions the same way, so the rest of ldcsf never asks which format a slide is:

- `OpenSlideReader`: what OpenSlide reads (Aperio .svs, Hamamatsu .ndpi, MIRAX .mrxs, Leica
  .scn, Ventana .bif, tiled pyramidal TIFF, ...). For tiled TIFF and Aperio files, whose levels
  are plain TIFF pages, pixels are decoded by tifffile tile by tile with a cache (`TiledPage`):
  the same pixels at about a third of OpenSlide's cost per read, which matters when a slide is
  read as thousands of small tiles.
- `TiffFileReader`: OME-TIFF and TIFFs OpenSlide rejects (e.g. striped or untiled), read through
  tifffile's zarr view, so a region read decodes only the tiles/strips it touches.
- `PillowReader`: PNG/JPEG pictures; these formats have no random access, so the picture is
  decoded into memory once.
- DICOM whole-slide images (`wsi.dicom`): a folder of one series, or any file of it, read by
  OpenSlide 4 from the series' largest level.

`open_slide(path, mpp=None)` picks the reader. Coordinates passed to `read_region` and
`read_rect` are always level-0 pixels; areas outside the slide read as white (background).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import OrderedDict
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile

#: File endings `open_slide` and cohort folder scans recognise as slides.
OPENSLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")
PILLOW_EXTENSIONS = (".png", ".jpg", ".jpeg")
DICOM_SLIDE_EXTENSIONS = (".dcm", ".dicom")
SLIDE_EXTENSIONS = OPENSLIDE_EXTENSIONS + PILLOW_EXTENSIONS + DICOM_SLIDE_EXTENSIONS

#: Pillow refuses pictures above ~179 Mpx as "decompression bombs". A stitched H&E picture can
#: be larger, so the limit is raised for slide pictures only, to 2 Gpx (6 GB decoded RGB).
PILLOW_MAX_PIXELS = 2_000_000_000

#: Microscopy scans lie between about 0.05 and 20 µm/px. Resolution tags outside that range are
#: a program's default (72 dpi = 353 µm/px), not a measurement, and are ignored.
PLAUSIBLE_MPP = (0.05, 20.0)

BACKGROUND = 255  # white: what glass looks like in a bright-field scan

#: Decoded TIFF tiles kept per pyramid level (`TiledPage`): enough for two rows of 256 px tiles
#: across a 200k px wide slide, so tiles read row by row decode every TIFF tile once.
TILE_CACHE_BYTES = 256 * 2**20
#: OpenSlide vendors whose levels are ordinary tiled TIFF pages that tifffile decodes.
TIFF_PAGE_VENDORS = ("generic-tiff", "aperio")


def missing_mpp_message(path: str | Path) -> str:
    return (
        f"{path}: no microns-per-pixel in the file's metadata; pass --mpp "
        "(µm per pixel at full resolution), e.g. --mpp 0.5 for a 20x scan"
    )


def plausible_mpp(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value) if PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1] else None


class SlideReader(ABC):
    """A whole-slide image, read by level-0 coordinates.

    Attributes:
        path: the slide file.
        dimensions: (width, height) at level 0 (full resolution).
        mpp: microns per pixel at level 0, or None when neither the file nor the caller says.
        level_dimensions: (width, height) of every pyramid level, largest first.
        level_downsamples: level-0 pixels per pixel of every level.
    """

    def __init__(self, path: Path, level_dimensions: list[tuple[int, int]], mpp: float | None) -> None:
        self.path = Path(path)
        self.level_dimensions = tuple((int(w), int(h)) for w, h in level_dimensions)
        width, height = self.level_dimensions[0]
        self.dimensions = (width, height)
        # Mean of the x and y ratios: how OpenSlide reports a level's downsample.
        self.level_downsamples = tuple(((width / w) + (height / h)) / 2 for w, h in self.level_dimensions)
        self.mpp = mpp

    # -- the interface -------------------------------------------------------------------------
    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @abstractmethod
    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read a box given in `level` pixels that lies fully inside that level."""

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        """RGB uint8 (h, w, 3): `w` x `h` pixels of `level`, top-left at level-0 pixel (x, y)."""
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")
        downsample = self.level_downsamples[level]
        level_w, level_h = self.level_dimensions[level]
        lx, ly = int(round(x / downsample)), int(round(y / downsample))
        out = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
        # Clip to the level: what lies outside the slide stays background.
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + w, level_w), min(ly + h, level_h)
        if x1 > x0 and y1 > y0:
            out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = self._read_level(level, x0, y0, x1 - x0, y1 - y0)
        return out

    def best_level_for_downsample(self, downsample: float) -> int:
        """The smallest level still at least as sharp as `downsample` (never upsample a level)."""
        best = 0
        for level, level_downsample in enumerate(self.level_downsamples):
            if level_downsample <= downsample * 1.01:  # 1 % slack: pyramid sizes are rounded
                best = level
        return best

    def read_rect(self, x: int, y: int, w_l0: int, h_l0: int, out_size: int | tuple[int, int],
                  interpolation: str = "bilinear") -> np.ndarray:
        """A level-0 rectangle, read from the best pyramid level and resized to `out_size` (w, h)."""
        out_w, out_h = (out_size, out_size) if isinstance(out_size, int) else out_size
        level = self.best_level_for_downsample(min(w_l0 / out_w, h_l0 / out_h))
        downsample = self.level_downsamples[level]
        w = max(1, int(round(w_l0 / downsample)))
        h = max(1, int(round(h_l0 / downsample)))
        region = self.read_region(x, y, w, h, level)
        if (w, h) == (out_w, out_h):
            return region
        return resize_rgb(region, out_w, out_h, interpolation)

    def thumbnail(self, max_size: int = 2048) -> tuple[Image.Image, float]:
        """A picture of the whole slide no larger than `max_size`, and its level-0 downsample."""
        width, height = self.dimensions
        scale = min(1.0, max_size / max(width, height))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        level = self.best_level_for_downsample(width / size[0])
        level_w, level_h = self.level_dimensions[level]
        # Read the level in horizontal bands so memory stays small even for an unpyramided slide.
        band_rows = max(1, 2**24 // (level_w * 3))
        rows = []
        for y in range(0, level_h, band_rows):
            band_h = min(band_rows, level_h - y)
            band = self._read_level(level, 0, y, level_w, band_h)
            out_h = max(1, round(band_h * size[1] / level_h))
            rows.append(np.asarray(Image.fromarray(band).resize((size[0], out_h), Image.Resampling.BOX)))
        picture = Image.fromarray(np.concatenate(rows, axis=0))
        if picture.size != size:  # band rounding can leave a row over or under
            picture = picture.resize(size, Image.Resampling.BILINEAR)
        return picture, width / size[0]

    def set_cache_bytes(self, cache_bytes: int) -> None:
        """Bound the decoded pixels a reader keeps per pyramid level (readers without a cache ignore it).

        The default suits reading a slide row by row once; a viewer that jumps around many slides
        keeps less."""

    def require_mpp(self) -> float:
        """The slide's µm/px, or the one-line error telling the user how to give it."""
        if self.mpp is None:
            raise ValueError(missing_mpp_message(self.path))
        return self.mpp

    def close(self) -> None:
        """Release the file handle (readers are also context managers)."""

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, dimensions={self.dimensions}, mpp={self.mpp}, levels={self.level_count})"


class OpenSlideReader(SlideReader):
    """Formats OpenSlide reads: vendor formats and tiled pyramidal TIFF."""

    def __init__(self, path: str | Path, mpp: float | None = None) -> None:
        import openslide

        path = Path(path)
        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as err:
            raise ValueError(f"{path}: not a readable slide ({err})") from None
        file_mpp = plausible_mpp(_float_or_none(self._slide.properties.get(openslide.PROPERTY_NAME_MPP_X)))
        super().__init__(path, list(self._slide.level_dimensions), mpp or file_mpp)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.vendor = self._slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "")
        self._tiff, self._pages = None, None
        if self.vendor in TIFF_PAGE_VENDORS:
            self._tiff, self._pages = _tiled_pages(path, self.level_dimensions)

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        import openslide

        if self._pages is not None:
            return self._pages[level].read(x, y, w, h)
        downsample = self.level_downsamples[level]
        try:
            region = self._slide.read_region((int(round(x * downsample)), int(round(y * downsample))), level, (w, h))
        except openslide.OpenSlideError as err:
            raise ValueError(f"{self.path}: cannot read pixels (damaged or truncated file?): {err}") from None
        rgba = np.asarray(region)
        if rgba[..., 3].min() == 255:  # the usual case: every pixel scanned
            return np.ascontiguousarray(rgba[..., :3])
        # OpenSlide returns RGBA with transparent pixels where the scanner saw nothing: show them as glass.
        background = Image.new("RGB", region.size, (BACKGROUND,) * 3)
        background.paste(region, mask=region.getchannel("A"))
        return np.asarray(background)

    def set_cache_bytes(self, cache_bytes: int) -> None:
        for page in self._pages or ():
            page.set_cache_bytes(cache_bytes)

    def close(self) -> None:
        self._slide.close()
        if self._tiff is not None:
            self._tiff.close()


class TiledPage:
    """Regions of one tiled TIFF page, decoded by tifffile one TIFF tile at a time, with a cache.

    Written here rather than taken from tifffile's zarr view or OpenSlide because neither keeps
    decoded tiles: a 224 px read from 256 px JPEG tiles decodes up to four tiles, and neighbouring
    reads decode them again. With the cache each tile is decoded once per pass over the slide.
    The cache holds at most `cache_bytes` of decoded pixels, least recently used dropped first.
    """

    def __init__(self, tif, page, cache_bytes: int = TILE_CACHE_BYTES) -> None:
        self.path = Path(tif.filehandle.path)
        self._fh = tif.filehandle
        self._page = page
        self._decode = page.decode  # tifffile's decoder for this page's compression and layout
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tiles_across = -(-self.width // self.tile_w)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.set_cache_bytes(cache_bytes)

    def set_cache_bytes(self, cache_bytes: int) -> None:
        self._cache_size = max(1, cache_bytes // (self.tile_w * self.tile_h * 3))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) of a box that lies inside the page."""
        out = np.empty((h, w, 3), dtype=np.uint8)
        for row in range(y // self.tile_h, (y + h - 1) // self.tile_h + 1):
            for col in range(x // self.tile_w, (x + w - 1) // self.tile_w + 1):
                tile = self._tile(row * self.tiles_across + col)
                tx, ty = col * self.tile_w, row * self.tile_h
                x0, x1 = max(x, tx), min(x + w, tx + self.tile_w)
                y0, y1 = max(y, ty), min(y + h, ty + self.tile_h)
                out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - ty : y1 - ty, x0 - tx : x1 - tx]
        return out

    def _tile(self, index: int) -> np.ndarray:
        tile = self._cache.get(index)
        if tile is not None:
            self._cache.move_to_end(index)
            return tile
        offset, count = self._page.dataoffsets[index], self._page.databytecounts[index]
        if not count:  # a tile the scanner never wrote: glass
            tile = np.full((self.tile_h, self.tile_w, 3), BACKGROUND, dtype=np.uint8)
        else:
            self._fh.seek(offset)
            try:
                data, _, _ = self._decode(self._fh.read(count), index, jpegtables=self._page.jpegtables)
            except Exception as err:  # noqa: BLE001 - codec errors come in many types
                raise ValueError(f"{self.path}: cannot read pixels (damaged or truncated file?): {err}") from None
            tile = _as_rgb_uint8(data.reshape(self.tile_h, self.tile_w, -1), self.path)
        self._cache[index] = tile
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tile


class TiffFileReader(SlideReader):
    """OME-TIFF and plain TIFF through tifffile; regions come from its zarr view (no full decode)."""

    def __init__(self, path: str | Path, mpp: float | None = None) -> None:
        import tifffile

        path = Path(path)
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            levels = list(series.levels)
            self._axes = series.axes
            dims = [_tiff_level_size(level.shape, level.axes) for level in levels]
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as err:
            raise ValueError(f"{path}: not a readable slide ({err})") from None
        self._levels = levels
        self._arrays: dict[int, object] = {}
        super().__init__(path, dims, mpp or _tiff_mpp(self._tif))

    def _level_array(self, level: int):
        if level not in self._arrays:
            import zarr

            self._arrays[level] = zarr.open(self._levels[level].aszarr(), mode="r")
        return self._arrays[level]

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        axes = self._levels[level].axes
        index = tuple(
            slice(y, y + h) if ax == "Y" else slice(x, x + w) if ax == "X" else slice(None) if ax == "S" else 0
            for ax in axes
        )
        try:
            region = np.asarray(self._level_array(level)[index])
        except Exception as err:  # noqa: BLE001 - codec errors come in many types
            raise ValueError(f"{self.path}: cannot read pixels (damaged or truncated file?): {err}") from None
        return _as_rgb_uint8(region, self.path)

    def close(self) -> None:
        self._tif.close()


#: The last decoded PNG/JPEG slide of this process. A slide run opens its picture for the
#: thumbnail and again in each tile reader; this keeps it decoded once, and DataLoader workers
#: forked after the first open share those pages instead of decoding their own copy.
_LAST_PICTURE: dict = {}


class PillowReader(SlideReader):
    """PNG/JPEG pictures, decoded into memory once (these formats cannot be read by region)."""

    def __init__(self, path: str | Path, mpp: float | None = None) -> None:
        path = Path(path)
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            if _LAST_PICTURE.get("key") == key:  # decoded already in this process, or before a fork
                self._array, dpi = _LAST_PICTURE["array"], _LAST_PICTURE["dpi"]
            else:
                _LAST_PICTURE.clear()  # the previous picture's memory goes before the next is decoded
                with _pillow_limits(), Image.open(path) as image:
                    check_picture_fits(path, image.size)  # from the header, before any pixel is decoded
                    dpi = image.info.get("dpi")
                    image.load()
                    # "RGB" pictures are taken as decoded; other modes need one conversion.
                    self._array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
                _LAST_PICTURE.update(key=key, array=self._array, dpi=dpi)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            if isinstance(err, ValueError) and str(err).startswith(str(path)):
                raise
            if isinstance(err, Image.DecompressionBombError):
                raise ValueError(f"{path}: picture too large to decode ({err}); convert it to a pyramidal TIFF "
                                 "(e.g. vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg)") from None
            raise ValueError(f"{path}: not a readable image ({err})") from None
        # Pillow reports the PNG pHYs / JPEG density as dots per inch.
        file_mpp = plausible_mpp(25400.0 / float(dpi[0])) if dpi and float(dpi[0]) > 0 else None
        height, width = self._array.shape[:2]
        super().__init__(path, [(width, height)], mpp or file_mpp)

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._array[y : y + h, x : x + w]

    def close(self) -> None:
        self._array = np.zeros((0, 0, 3), np.uint8)


def available_memory_bytes() -> int:
    """Memory the system can give without swapping (Linux MemAvailable; else free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63


def check_picture_fits(path: Path, size: tuple[int, int]) -> None:
    """Refuse a PNG/JPEG whose decoded pixels cannot fit in memory, before decoding it.

    The picture is held decoded (3 bytes a pixel) while its Pillow copy is converted, so twice
    that must be free. A pyramidal TIFF is read by region instead and never needs this.
    """
    width, height = size
    needed = 2 * 3 * width * height
    available = available_memory_bytes()
    if width * height > PILLOW_MAX_PIXELS or needed > available:
        raise ValueError(
            f"{path}: a {width}x{height} px picture needs {needed / 2**30:.1f} GiB to decode, more than the "
            f"{available / 2**30:.1f} GiB free; convert it to a pyramidal TIFF (e.g. vips tiffsave IN OUT.tif "
            "--tile --pyramid --compression jpeg), which is read by region"
        )


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


def resize_rgb(rgb: np.ndarray, width: int, height: int, interpolation: str = "bilinear") -> np.ndarray:
    """RGB uint8 resized with antialiased bilinear (or bicubic) interpolation, as torchvision's `v2.Resize` does.

    torch's uint8 kernel: the same resampling training applies to its tiles (so slide tiles look
    like training tiles), and about 4x faster than Pillow's, which matters once per tile.
    """
    import torch
    from torch.nn.functional import interpolate

    rgb = np.ascontiguousarray(rgb)
    if not rgb.flags.writeable:  # e.g. an array viewing a PIL image; torch wants writable memory
        rgb = rgb.copy()
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    resized = interpolate(image, size=(height, width), mode=interpolation, antialias=True)
    return np.ascontiguousarray(resized[0].permute(1, 2, 0).numpy())


# -- helpers -------------------------------------------------------------------------------------
def _tiled_pages(path: Path, level_dimensions) -> tuple[object, list[TiledPage] | None]:
    """tifffile pages holding OpenSlide's levels, when each level is a plain tiled RGB page.

    Returns (open TiffFile, pages per level), or (None, None) to leave the pixels to OpenSlide
    (striped or unusual pages, planar data, a level without a page of its size).
    """
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception:  # noqa: BLE001 - OpenSlide opened it; it stays the reader of record
        return None, None
    try:
        by_size = {}
        for page in tif.pages:
            if _plain_rgb_tiles(page):
                by_size.setdefault((int(page.imagewidth), int(page.imagelength)), page)
        pages = [by_size.get((int(w), int(h))) for w, h in level_dimensions]
        if all(page is not None for page in pages):
            return tif, [TiledPage(tif, page) for page in pages]
    except Exception:  # noqa: BLE001 - any surprise in the layout: OpenSlide reads it
        pass
    tif.close()
    return None, None


#: TIFF compressions whose decoded pixels are the RGB as stored: none, LZW, JPEG, deflate. Aperio's
#: JPEG 2000 (33003/33005) is left to OpenSlide, which also converts its YCbCr.
_PLAIN_COMPRESSIONS = (1, 5, 7, 8, 32946)


def _plain_rgb_tiles(page) -> bool:
    """A page tifffile decodes tile by tile into 8-bit RGB, as OpenSlide would show it."""
    rgb = page.photometric == 2 or (page.photometric == 6 and page.compression == 7)  # YCbCr only inside JPEG
    return bool(page.is_tiled and page.tiledepth == 1 and page.planarconfig == 1 and page.dtype == np.uint8
                and page.samplesperpixel == 3 and rgb and page.compression in _PLAIN_COMPRESSIONS)


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@contextmanager
def _pillow_limits() -> Iterator[None]:
    """Raise Pillow's decompression-bomb limit and refuse truncated data, for one open only."""
    previous = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = PILLOW_MAX_PIXELS, False
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _tiff_level_size(shape: tuple[int, ...], axes: str) -> tuple[int, int]:
    if "X" not in axes or "Y" not in axes:
        raise ValueError(f"image axes {axes!r} have no X/Y")
    return shape[axes.index("X")], shape[axes.index("Y")]


_OME_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _tiff_mpp(tif) -> float | None:
    """µm/px from OME PhysicalSizeX, or else the TIFF XResolution + ResolutionUnit tags."""
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
            pixels = next(el for el in root.iter() if el.tag.endswith("Pixels"))
            size = pixels.get("PhysicalSizeX")
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            if size is not None and unit in _OME_UNITS_UM:
                return plausible_mpp(float(size) * _OME_UNITS_UM[unit])
        except (ET.ParseError, StopIteration, ValueError):
            pass
    tags = tif.pages[0].tags
    if "XResolution" not in tags:
        return None
    numerator, denominator = tags["XResolution"].value
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    pixels_per_unit = numerator / denominator if denominator else 0.0
    microns_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)  # 2 = inch, 3 = centimetre; 1 = no unit
    if not pixels_per_unit or microns_per_unit is None:
        return None
    return plausible_mpp(microns_per_unit / pixels_per_unit)


def _as_rgb_uint8(region: np.ndarray, path: Path) -> np.ndarray:
    if region.ndim == 2:  # greyscale
        region = np.repeat(region[..., None], 3, axis=2)
    if region.shape[-1] == 4:  # RGBA: drop alpha
        region = region[..., :3]
    if region.ndim != 3 or region.shape[-1] != 3:
        raise ValueError(f"{path}: not an RGB image (pixel array of shape {region.shape})")
    if region.dtype != np.uint8:
        if region.dtype == np.uint16:
            region = (region >> 8).astype(np.uint8)
        else:
            raise ValueError(f"{path}: unsupported pixel type {region.dtype} (expected 8-bit RGB)")
    return np.ascontiguousarray(region)
