"""OME-TIFF and TIFFs OpenSlide rejects (e.g. striped or untiled), read through tifffile's zarr
view, so a region read decodes only the tiles or strips it touches."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .slide_format import SlideFormat
from .slide_reader import SlideReader, as_rgb_uint8, plausible_mpp


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
        return as_rgb_uint8(region, self.path)

    def close(self) -> None:
        self._tif.close()


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



#: OME-TIFF: one file, named by what comes before its two-part ending.
OME_TIFF_FORMAT = SlideFormat(name="ome-tiff", extensions=(".ome.tiff", ".ome.tif"), open=TiffFileReader)
