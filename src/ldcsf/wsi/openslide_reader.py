"""Slides OpenSlide reads: Aperio .svs, Hamamatsu .ndpi, MIRAX .mrxs, Leica .scn, Ventana .bif,
tiled pyramidal TIFF, DICOM WSI, ...

OpenSlide gives the pyramid and the metadata. For tiled TIFF and Aperio files, whose levels are
plain TIFF pages, pixels are decoded by tifffile tile by tile with a cache (`TiledPage`): the
same pixels at about a third of OpenSlide's cost per read, which matters when a slide is read
as thousands of small tiles.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from .slide_format import SlideFormat
from .slide_reader import BACKGROUND, SlideReader, as_rgb_uint8, float_or_none, plausible_mpp

#: Decoded TIFF tiles kept per pyramid level (`TiledPage`): enough for two rows of 256 px tiles
#: across a 200k px wide slide, so tiles read row by row decode every TIFF tile once.
TILE_CACHE_BYTES = 256 * 2**20
#: OpenSlide vendors whose levels are ordinary tiled TIFF pages that tifffile decodes.
TIFF_PAGE_VENDORS = ("generic-tiff", "aperio")


class OpenSlideReader(SlideReader):
    """Formats OpenSlide reads: vendor formats and tiled pyramidal TIFF."""

    def __init__(self, path: str | Path, mpp: float | None = None) -> None:
        import openslide

        path = Path(path)
        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as err:
            raise ValueError(f"{path}: not a readable slide ({err})") from None
        file_mpp = plausible_mpp(float_or_none(self._slide.properties.get(openslide.PROPERTY_NAME_MPP_X)))
        super().__init__(path, list(self._slide.level_dimensions), mpp or file_mpp)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.vendor = self._slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "")
        self.properties = dict(self._slide.properties)
        # Sizes from OpenSlide's properties: asking the images themselves would decode them.
        self.associated_images = {
            name: (int(self.properties.get(f"openslide.associated.{name}.width", 0)),
                   int(self.properties.get(f"openslide.associated.{name}.height", 0)))
            for name in self._slide.associated_images
        }
        self.file_mpp = file_mpp
        power = float_or_none(self._slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        self.objective_power = power if power is not None and 1 <= power <= 150 else None
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

    def describe_tile(self, index: int) -> str:
        """Where a stored tile lies, in words (an error message names the damaged one)."""
        row, col = divmod(index, self.tiles_across)
        x, y = col * self.tile_w, row * self.tile_h
        return (f"the stored image tile in column {col + 1}, row {row + 1} (pixels x {x}-{x + self.tile_w - 1}, "
                f"y {y}-{y + self.tile_h - 1}) of the {self.width} x {self.height} px level")

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
                tile = as_rgb_uint8(data.reshape(self.tile_h, self.tile_w, -1), self.path)
            except Exception as err:  # noqa: BLE001 - codec errors come in many types
                raise ValueError(f"{self.path}: {self.describe_tile(index)} is damaged and cannot be decoded "
                                 f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); the slide is "
                                 "not scored without it: export or scan it again") from None
        self._cache[index] = tile
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tile


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



def open_openslide_or_tiff(path: Path, mpp: float | None = None) -> SlideReader:
    """OpenSlide, and for a TIFF it rejects (untiled, striped, unusual layout) tifffile instead."""
    try:
        return OpenSlideReader(path, mpp)
    except ValueError:
        if Path(path).suffix.lower() not in (".tif", ".tiff"):
            raise
    from .tifffile_reader import TiffFileReader

    return TiffFileReader(path, mpp)


#: What OpenSlide reads in one file (MIRAX, several files, has its own module: mirax.py).
OPENSLIDE_FORMAT = SlideFormat(
    name="openslide",
    extensions=(".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".svslide", ".bif"),
    open=open_openslide_or_tiff,
)
