"""What a slide is, in one typed record: format, size, pyramid, µm/px and where it came from.

    info = slide_info("case1.svs")
    info.dimensions, info.levels[1].downsample, info.mpp, info.mpp_source

`ldcsf info` prints it. The µm/px is the one a slide run would use (an --mpp override, else the
file's metadata); when the file gives none but names its objective power, the estimate from
the power (10 µm / power) is shown with its source, and a slide run still asks for --mpp.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .formats import format_of, slide_files
from .readers import check_mpp_override, open_slide
from .slide_reader import MPP_TIMES_POWER_UM, plausible_mpp

MPP_FROM_OVERRIDE = "user override"
MPP_FROM_FILE = "file metadata"
MPP_FROM_POWER = "objective power estimate"


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level: its (width, height) and level-0 pixels per pixel."""

    dimensions: tuple[int, int]
    downsample: float


@dataclass(frozen=True)
class SlideInfo:
    """A slide as its reader sees it.

    Attributes:
        path: the slide (a file, or a DICOM series' folder).
        format: the format's name in `wsi.formats.FORMATS` ("openslide", "dicom", ...).
        files: how many files make up the slide.
        dimensions: level-0 (width, height).
        levels: every pyramid level, largest first.
        mpp: µm/px at level 0, or None when nothing gives it.
        mpp_source: MPP_FROM_OVERRIDE, MPP_FROM_FILE, MPP_FROM_POWER, or None.
        file_mpp: the file's own µm/px (None where it gives none).
        vendor: who made the file, as the reader names it ("aperio", ...; "" when unknown).
        objective_power: the scan's objective magnification, when the file names it.
        associated_images: pictures stored beside the pyramid: (name, (width, height)) pairs.
        properties: the file's own metadata, (key, value) pairs, as the reader gives it.
    """

    path: Path
    format: str
    files: int
    dimensions: tuple[int, int]
    levels: tuple[LevelInfo, ...]
    mpp: float | None
    mpp_source: str | None
    file_mpp: float | None
    vendor: str
    objective_power: float | None
    associated_images: tuple[tuple[str, tuple[int, int]], ...]
    properties: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict:
        """Plain JSON types (path as text, pairs as mappings)."""
        out = asdict(self)
        out["path"] = str(self.path)
        out["associated_images"] = {name: list(size) for name, size in self.associated_images}
        out["properties"] = dict(self.properties)
        return out


def slide_info(path: str | Path, mpp: float | None = None) -> SlideInfo:
    """Open a slide and describe it; `mpp` is an override, as `--mpp` gives it.

    Raises what `open_slide` raises: one line naming the file and what is wrong.
    """
    path = Path(path)
    fmt = format_of(path)
    with open_slide(path) as reader:  # without the override, so the file's own µm/px is seen
        check_mpp_override(path, mpp)
        file_mpp = reader.mpp
        power = reader.objective_power
        mpp_value, source = _mpp_and_source(mpp, file_mpp, power)
        return SlideInfo(
            path=path,
            format=fmt.name if fmt is not None else "openslide",  # an unknown ending is offered to OpenSlide
            files=len(slide_files(path)),
            dimensions=tuple(reader.dimensions),
            levels=tuple(LevelInfo(tuple(size), float(down))
                         for size, down in zip(reader.level_dimensions, reader.level_downsamples)),
            mpp=mpp_value,
            mpp_source=source,
            file_mpp=file_mpp,
            vendor=reader.vendor,
            objective_power=power,
            associated_images=tuple(sorted(reader.associated_images.items())),
            properties=tuple(sorted(reader.properties.items())),
        )


def _mpp_and_source(override: float | None, file_mpp: float | None,
                    power: float | None) -> tuple[float | None, str | None]:
    if override is not None:
        return float(override), MPP_FROM_OVERRIDE
    if file_mpp is not None:
        return file_mpp, MPP_FROM_FILE
    estimate = plausible_mpp(MPP_TIMES_POWER_UM / power) if power else None
    return (estimate, MPP_FROM_POWER) if estimate is not None else (None, None)
