"""PNG and JPEG pictures as slides: decoded into memory once (these formats have no random access),
and refused from their header when they cannot fit."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile

from .slide_format import SlideFormat
from .slide_reader import SlideReader, plausible_mpp

#: Pillow refuses pictures above ~179 Mpx as "decompression bombs". A stitched H&E picture can
#: be larger, so the limit is raised for slide pictures only, to 2 Gpx (6 GB decoded RGB).
PILLOW_MAX_PIXELS = 2_000_000_000


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
    convert = ("; convert it to a pyramidal TIFF (e.g. vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg), "
               "which is read region by region")
    if width * height > PILLOW_MAX_PIXELS:
        raise ValueError(
            f"{path}: a {width}x{height} px picture ({width * height / 1e9:.1f} Gpx) is larger than the "
            f"{PILLOW_MAX_PIXELS / 1e9:.0f} Gpx a plain PNG/JPEG may have: it is read whole, which would take "
            f"{needed / 2**30:.1f} GiB of memory{convert}"
        )
    if needed > available:
        raise ValueError(
            f"{path}: a {width}x{height} px picture is read whole, which would take {needed / 2**30:.1f} GiB of "
            f"memory, and only {available / 2**30:.1f} GiB is free{convert}"
        )


@contextmanager
def _pillow_limits() -> Iterator[None]:
    """Raise Pillow's decompression-bomb limit and refuse truncated data, for one open only."""
    previous = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = PILLOW_MAX_PIXELS, False
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = previous



#: PNG and JPEG pictures: one file, one level.
PICTURE_FORMAT = SlideFormat(name="picture", extensions=(".png", ".jpg", ".jpeg"), open=PillowReader)
