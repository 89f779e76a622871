"""The slide as a Deep Zoom tile pyramid, produced tile by tile from the project's readers.

OpenSlide's `DeepZoomGenerator` does the Deep Zoom arithmetic (levels, tile addresses, overlap,
which slide level to read). It asks its slide for `read_region`, `level_dimensions` and a few
properties only, so `ReaderAsOpenSlide` offers those over any `SlideReader`: OpenSlide formats,
tiled TIFF and plain pictures are served the same way, with the readers' tile cache.
The map layers use the same generator over the slide's size alone (`GeometryOnly`), so every
layer tile lies exactly on its slide tile.
"""

from __future__ import annotations

import io
import threading

from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from ..wsi.readers import SlideReader

#: Deep Zoom tiles: 254 px + 1 px overlap on each side = 256 px, the size viewers fetch best.
TILE_SIZE = 254
OVERLAP = 1
JPEG_QUALITY = 85


class TileNotFound(LookupError):
    """A tile address outside the pyramid (the server answers 404)."""


class SlideClosed(RuntimeError):
    """The slide was released (least recently used) between finding it and reading it: reopen it."""


class ReaderAsOpenSlide:
    """The part of `openslide.OpenSlide` that `DeepZoomGenerator` uses, over a `SlideReader`."""

    properties: dict[str, str] = {}
    associated_images: dict[str, Image.Image] = {}

    def __init__(self, reader: SlideReader) -> None:
        self._reader = reader
        self.level_dimensions = reader.level_dimensions
        self.level_downsamples = reader.level_downsamples
        self.dimensions = reader.dimensions
        self.level_count = reader.level_count

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return self._reader.best_level_for_downsample(downsample)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        w, h = (max(1, int(v)) for v in size)
        rgb = self._reader.read_region(location, level, (w, h))
        return Image.fromarray(rgb).convert("RGBA")


class GeometryOnly:
    """A slide of the given size with one level and no pixels: Deep Zoom geometry for map layers."""

    properties: dict[str, str] = {}

    def __init__(self, dimensions: tuple[int, int]) -> None:
        self.dimensions = (int(dimensions[0]), int(dimensions[1]))
        self.level_dimensions = (self.dimensions,)
        self.level_downsamples = (1.0,)
        self.level_count = 1

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return 0


class Pyramid:
    """Deep Zoom geometry of a slide size: levels, tile ranges and each tile's level-0 box."""

    def __init__(self, dimensions: tuple[int, int]) -> None:
        self.dz = DeepZoomGenerator(GeometryOnly(dimensions), tile_size=TILE_SIZE, overlap=OVERLAP)

    @property
    def level_count(self) -> int:
        return self.dz.level_count

    def check(self, level: int, col: int, row: int) -> None:
        if not 0 <= level < self.dz.level_count:
            raise TileNotFound(f"level {level} does not exist (levels 0 to {self.dz.level_count - 1})")
        cols, rows = self.dz.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileNotFound(f"tile {col}_{row} is outside level {level} ({cols} x {rows} tiles)")

    def box(self, level: int, col: int, row: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """((x, y, w, h) in level-0 pixels, (width, height) of the tile image)."""
        self.check(level, col, row)
        (x, y), _, (w, h) = self.dz.get_tile_coordinates(level, (col, row))
        return (x, y, w, h), self.dz.get_tile_dimensions(level, (col, row))

    def dzi(self, fmt: str) -> str:
        return self.dz.get_dzi(fmt)


class SlideTiles:
    """JPEG tiles of one open slide. Reads are serialised: the readers' tile caches are not thread-safe."""

    def __init__(self, reader: SlideReader) -> None:
        self.reader = reader
        self.pyramid = Pyramid(reader.dimensions)
        self.dz = DeepZoomGenerator(ReaderAsOpenSlide(reader), tile_size=TILE_SIZE, overlap=OVERLAP)
        self._lock = threading.Lock()
        self.closed = False

    def dzi(self) -> str:
        return self.dz.get_dzi("jpeg")

    def tile_jpeg(self, level: int, col: int, row: int) -> bytes:
        self.pyramid.check(level, col, row)
        with self._lock:
            if self.closed:
                raise SlideClosed(str(self.reader.path))
            tile = self.dz.get_tile(level, (col, row))
        buffer = io.BytesIO()
        tile.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()

    def thumbnail(self, max_size: int) -> Image.Image:
        with self._lock:
            if self.closed:
                raise SlideClosed(str(self.reader.path))
            return self.reader.thumbnail(max_size)[0]

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.reader.close()
