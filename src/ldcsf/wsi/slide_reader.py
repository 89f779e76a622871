"""The one interface every slide reader answers, whatever the file format.

Names follow OpenSlide where OpenSlide has the same thing, with OpenSlide's meaning and argument
order: `dimensions`, `level_count`, `level_dimensions`, `level_downsamples` and
`read_region(location, level, size)`. Two differences, both on purpose: `read_region` returns an
RGB uint8 numpy array (h, w, 3), not an RGBA PIL image, and what lies outside the slide (or
was never scanned) reads as white glass rather than transparent black.

Reads at a physical resolution are the reader's job, not the caller's: `read_at_mpp` takes a
region's size in pixels at a µm/px, picks the pyramid level and resizes; `level0_extent` says
how many level-0 pixels that region covers (the tile grid cuts its tiles by the same rule).
"""

from __future__ import annotations

import math
import numbers
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from PIL import Image

from .resize import Resizer, pillow_resize

#: Microscopy scans lie between about 0.05 and 20 µm/px. Resolution tags outside that range are
#: a program's default (72 dpi = 353 µm/px), not a measurement, and are ignored.
PLAUSIBLE_MPP = (0.05, 20.0)

BACKGROUND = 255  # white: what glass looks like in a bright-field scan
#: µm/px times objective power: 10 µm (a 20x objective sees about 0.5 µm/px, a 40x about 0.25).
MPP_TIMES_POWER_UM = 10.0
#: µm/px and objective power of one header may differ this much (scanners' optics vary ~1.2x):
#: more is warned about loudly; above REFUSE_MPP_DISAGREEMENT (a slipped decimal point, 10x) the
#: slide is refused until --mpp says which is right.
WARN_MPP_DISAGREEMENT = 1.6
REFUSE_MPP_DISAGREEMENT = 3.0
#: An --mpp this far from the header's own µm/px (a measurement, unlike the objective power) is
#: warned about: told 1.25x the true µm/px, held-out stroma fractions moved by 0.05-0.07 and 12-16 %
#: of stroma-high/low calls flipped (benchmarks/heldout_scale_error.py, docs/results.md).
WARN_MPP_OVERRIDE = 1.2


def missing_mpp_message(path: str | Path) -> str:
    return (
        f"{path}: no microns-per-pixel in the file's metadata; pass --mpp "
        "(µm per pixel at full resolution), e.g. --mpp 0.5 for a 20x scan"
    )


def disagreement(a: float, b: float) -> float:
    """How many times larger the larger of two positive numbers is."""
    return max(a / b, b / a)


def plausible_mpp(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value) if PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1] else None


def level0_pixels(pixels: int, mpp: float, slide_mpp: float) -> int:
    """Level-0 pixels covered by `pixels` pixels at `mpp` µm/px on a slide scanned at `slide_mpp`.

    Rounded to whole pixels (at least one): tiles and regions start and end on level-0 pixels.
    """
    return max(1, round(pixels * mpp / slide_mpp))


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, numbers.Integral) else (int(size[0]), int(size[1]))


class SlideReader(ABC):
    """A whole-slide image: its pyramid, its µm/px, and regions read from it.

    Attributes:
        path: the slide file.
        dimensions: (width, height) at level 0 (full resolution).
        mpp: microns per pixel at level 0, or None when neither the file nor the caller says.
        level_dimensions: (width, height) of every pyramid level, largest first.
        level_downsamples: level-0 pixels per pixel of every level.
        resizer: how regions are resized to the size asked for (`wsi.resize.Resizer`); Pillow's
            antialiased filters unless a caller sets another (the tile dataset sets torch's).
    """

    resizer: Resizer = staticmethod(pillow_resize)
    #: The header's own µm/px and objective power (None where the format or file gives none).
    file_mpp: float | None = None
    objective_power: float | None = None
    #: Who made the file, the header's own key/value metadata, and the pictures stored beside the
    #: pyramid (label, macro, thumbnail) by name with their (width, height): what the format gives.
    vendor: str = ""
    properties: dict[str, str] = {}
    associated_images: dict[str, tuple[int, int]] = {}

    def __init__(self, path: Path, level_dimensions: list[tuple[int, int]], mpp: float | None) -> None:
        self.path = Path(path)
        self.level_dimensions = tuple((int(w), int(h)) for w, h in level_dimensions)
        width, height = self.level_dimensions[0]
        self.dimensions = (width, height)
        # Mean of the x and y ratios: how OpenSlide reports a level's downsample.
        self.level_downsamples = tuple(((width / w) + (height / h)) / 2 for w, h in self.level_dimensions)
        self.mpp = mpp

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @abstractmethod
    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read a box given in `level` pixels that lies fully inside that level."""

    # -- reading by level, as OpenSlide does --------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int], *old_order) -> np.ndarray:
        """RGB uint8 (h, w, 3): `size` = (w, h) pixels of `level`, top-left at level-0 `location` = (x, y).

        OpenSlide's `read_region` arguments and meaning; see the module for the two differences.
        The older order `read_region(x, y, w, h, level=0)` still works for now, with a
        DeprecationWarning (`*old_order` holds its last arguments).
        """
        if isinstance(location, numbers.Integral):
            warnings.warn("read_region(x, y, w, h, level) is deprecated: use read_region((x, y), level, (w, h)), "
                          "OpenSlide's order", DeprecationWarning, stacklevel=2)
            x, y, w, h, level = location, level, size, *(old_order + (0,))[:2]
            return self._region(int(x), int(y), int(w), int(h), int(level))
        if old_order:
            raise TypeError(f"read_region(location, level, size) takes 3 arguments, got {3 + len(old_order)}")
        (x, y), (w, h) = location, size
        return self._region(int(x), int(y), int(w), int(h), int(level))

    def _region(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")
        if w < 0 or h < 0:
            raise ValueError(f"{self.path}: region size cannot be negative, got {w} x {h}")
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
        """The smallest level still at least as sharp as `downsample` (never upsample a level).

        OpenSlide's `get_best_level_for_downsample`, with 1 % slack: pyramid sizes are rounded,
        so a level that is 2.002x smaller still serves a request for 2x."""
        best = 0
        for level, level_downsample in enumerate(self.level_downsamples):
            if level_downsample <= downsample * 1.01:
                best = level
        return best

    # -- reading at a size or a resolution ----------------------------------------------------
    def read_box(self, box: tuple[int, int, int, int], size: int | tuple[int, int],
                 interpolation: str = "bilinear") -> np.ndarray:
        """RGB uint8: the level-0 `box` (x, y, width, height), resized to `size` (w, h; or one side).

        Read from the smallest level still as sharp as needed, then resized by `self.resizer`
        (antialiased `interpolation`: "bilinear" or "bicubic"); not resized when the level
        already has the size asked for.
        """
        x, y, w_l0, h_l0 = (int(v) for v in box)
        out_w, out_h = _pair(size)
        level = self.best_level_for_downsample(min(w_l0 / out_w, h_l0 / out_h))
        downsample = self.level_downsamples[level]
        w = max(1, int(round(w_l0 / downsample)))
        h = max(1, int(round(h_l0 / downsample)))
        region = self._region(x, y, w, h, level)
        if (w, h) == (out_w, out_h):
            return region
        return self.resizer(region, out_w, out_h, interpolation)

    def level0_extent(self, size: int | tuple[int, int], mpp: float) -> tuple[int, int]:
        """(width, height) in level-0 pixels of a region `size` pixels large at `mpp` µm/px."""
        slide_mpp = self.require_mpp()
        if not mpp > 0:
            raise ValueError(f"{self.path}: µm/px to read at must be positive, got {mpp}")
        out_w, out_h = _pair(size)
        return level0_pixels(out_w, mpp, slide_mpp), level0_pixels(out_h, mpp, slide_mpp)

    def read_at_mpp(self, location: tuple[int, int], size: int | tuple[int, int], mpp: float,
                    interpolation: str = "bilinear") -> np.ndarray:
        """RGB uint8 (h, w, 3): `size` = (w, h) pixels at `mpp` µm/px, top-left at level-0 `location`.

        The level-0 box it covers is `level0_extent(size, mpp)`, the rule the tile grid cuts
        tiles by, so a grid tile read here equals `read_box` of its row in the tile table.
        """
        x, y = location
        return self.read_box((x, y, *self.level0_extent(size, mpp)), size, interpolation)

    def read_rect(self, x: int, y: int, w_l0: int, h_l0: int, out_size: int | tuple[int, int],
                  interpolation: str = "bilinear") -> np.ndarray:
        """Deprecated: `read_box((x, y, w_l0, h_l0), out_size)` (TIAToolbox's `read_rect` means another thing)."""
        warnings.warn("read_rect(x, y, w, h, out_size) is deprecated: use read_box((x, y, w, h), out_size) "
                      "or read_at_mpp((x, y), size, mpp)", DeprecationWarning, stacklevel=2)
        return self.read_box((x, y, w_l0, h_l0), out_size, interpolation)

    # -- the whole slide ----------------------------------------------------------------------
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

    def check_resolution(self) -> list[str]:
        """Cross-check the µm/px against the header's objective power (and --mpp against the header).

        ValueError (one line, naming both values and --mpp) when the header contradicts itself
        by more than REFUSE_MPP_DISAGREEMENT and no --mpp was given: a 10x wrong µm/px makes
        tiles of a tenth of the size and flips the category. Returns warnings (one line each) for
        smaller disagreements and for an --mpp the header contradicts.
        """
        power = self.objective_power
        from_power = MPP_TIMES_POWER_UM / power if power else None  # the µm/px the objective implies
        given = self.mpp if self.mpp != self.file_mpp else None  # the caller's --mpp
        if given is None:
            if not (from_power and self.file_mpp):
                return []
            ratio = disagreement(self.file_mpp, from_power)
            header = (f"the header says {self.file_mpp:g} µm/px but also objective power {power:g}x "
                      f"(about {from_power:.2f} µm/px), {ratio:.1f}x apart")
            if ratio > REFUSE_MPP_DISAGREEMENT:
                raise ValueError(f"{self.path}: {header}; pass --mpp with the true µm/px to go on")
            return [f"{self.path}: {header}; using {self.file_mpp:g} µm/px (pass --mpp if that is wrong)"] \
                if ratio > WARN_MPP_DISAGREEMENT else []
        header_says = []  # (what, its µm/px, how far --mpp may be from it unwarned)
        if self.file_mpp:
            header_says.append((f"the header's µm/px ({self.file_mpp:g} µm/px)", self.file_mpp, WARN_MPP_OVERRIDE))
        if from_power:
            header_says.append((f"the header's objective power ({power:g}x, about {from_power:.2f} µm/px)",
                                from_power, WARN_MPP_DISAGREEMENT))
        for what, value, allowed in header_says:
            if disagreement(given, value) > allowed:
                return [f"{self.path}: --mpp {given:g} is {disagreement(given, value):.2f}x from {what}; "
                        "tiles are cut at --mpp, and a scale 1.25x off moves a stroma fraction by about 0.05: "
                        "check it is right"]
        return []

    def close(self) -> None:
        """Release the file handle (readers are also context managers)."""

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, dimensions={self.dimensions}, mpp={self.mpp}, levels={self.level_count})"


def as_rgb_uint8(region: np.ndarray, path: Path) -> np.ndarray:
    """Decoded pixels as RGB uint8: greyscale repeated, alpha dropped, 16-bit scaled down."""
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


def float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
