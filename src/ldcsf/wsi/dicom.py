"""DICOM whole-slide images (VL Whole Slide Microscopy): a slide is a series of files.

A DICOM WSI is stored as one file per pyramid level (plus thumbnail, label and overview files),
all sharing a SeriesInstanceUID. Here a folder holding one series, or any one file of it, is one
slide, named by its container (specimen slide) identifier or else its series UID. Pixels and
levels are read by OpenSlide 4, which gathers every instance of the series from the file's
folder; pydicom only reads headers, to group files into series and to say what a file that
OpenSlide refuses is missing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .slide_format import SlideFormat

#: SOP Class UID of VL Whole Slide Microscopy Image Storage.
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
DICOM_EXTENSIONS = (".dcm", ".dicom")
#: ContainerIdentifier values that say nothing (converters fill them in when they know none).
_NO_CONTAINER = {"", "unknown", "none", "n/a", "na"}


@dataclass
class DicomSeries:
    """The files of one slide, and the name its outputs take."""

    series_uid: str
    slide_id: str
    files: list[Path] = field(default_factory=list)
    volume_files: list[Path] = field(default_factory=list)  # pyramid levels (ImageType VOLUME)

    @property
    def main_file(self) -> Path:
        """The file OpenSlide is given: the largest pyramid level (or the largest file)."""
        candidates = self.volume_files or self.files
        return max(candidates, key=lambda p: (p.stat().st_size, str(p)))


def is_dicom_path(path: Path) -> bool:
    return path.suffix.lower() in DICOM_EXTENSIONS


def read_header(path: Path) -> dict:
    """What ldcsf needs from a DICOM header (no pixels are read), or ValueError naming the file.

    Values are taken out while pydicom is told to ignore slips such as over-long UIDs (common in
    real files; another library may have set pydicom to raise on them).
    """
    import pydicom
    from pydicom import config

    previous = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
            shared = ds.get("SharedFunctionalGroupsSequence") or []
            return {
                "SOPClassUID": str(ds.get("SOPClassUID", "") or ""),
                "SeriesInstanceUID": str(ds.get("SeriesInstanceUID", "") or ""),
                "ContainerIdentifier": str(ds.get("ContainerIdentifier", "") or "").strip(),
                "ImageType": [str(v).upper() for v in (ds.get("ImageType") or [])],
                "TotalPixelMatrixColumns": ds.get("TotalPixelMatrixColumns"),
                "TotalPixelMatrixRows": ds.get("TotalPixelMatrixRows"),
                "DimensionOrganizationType": str(ds.get("DimensionOrganizationType", "") or ""),
                "frame_positions": any("PlanePositionSlideSequence" in item for item in per_frame),
                "pixel_spacing": any("PixelMeasuresSequence" in item for item in [*shared, *per_frame]),
            }
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for a non-DICOM file
        raise ValueError(f"{path}: not a readable DICOM file ({err})") from None
    finally:
        config.settings.reading_validation_mode = previous


def series_in(paths: list[Path]) -> list[DicomSeries]:
    """Group DICOM files into whole-slide series (other DICOM objects are left out)."""
    by_uid: dict[str, DicomSeries] = {}
    for path in sorted(paths):
        header = read_header(path)
        if header["SOPClassUID"] != WSI_SOP_CLASS:
            continue
        uid = header["SeriesInstanceUID"] or path.stem
        series = by_uid.get(uid)
        if series is None:
            container = header["ContainerIdentifier"]
            slide_id = container if container.lower() not in _NO_CONTAINER else uid
            series = by_uid[uid] = DicomSeries(series_uid=uid, slide_id=slide_id)
        series.files.append(path)
        if "VOLUME" in header["ImageType"]:
            series.volume_files.append(path)
    return list(by_uid.values())


def series_of(path: Path) -> DicomSeries:
    """The series a DICOM file belongs to (its siblings in the folder), or the one series of a folder."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    files = [p for p in folder.iterdir() if p.is_file() and is_dicom_path(p)]
    found = series_in(files)
    if path.is_dir():
        if not found:
            raise ValueError(f"{path}: no DICOM whole-slide image files in this folder")
        if len(found) > 1:
            raise ValueError(f"{path}: holds {len(found)} DICOM slides (series); give one file of the slide wanted")
        return found[0]
    uid = read_header(path)["SeriesInstanceUID"] or path.stem
    for series in found:
        if series.series_uid == uid:
            return series
    raise ValueError(f"{path}: not a DICOM whole-slide image (VL Whole Slide Microscopy)")


def dicom_slide_id(path: Path) -> str:
    return series_of(path).slide_id


def dicom_id_or_none(path: Path) -> str | None:
    """The slide id of a DICOM file or folder; None for other slides or unreadable headers
    (those are named by their file, and fail with their own message when opened)."""
    if not (is_dicom_path(path) or (path.is_dir() and any(is_dicom_path(p) for p in path.iterdir()))):
        return None
    try:
        return dicom_slide_id(path)
    except (ValueError, OSError):
        return None


def nonconformance(path: Path) -> list[str]:
    """What a VL Whole Slide Microscopy file lacks that readers need to place its frames."""
    header = read_header(path)
    if header["SOPClassUID"] != WSI_SOP_CLASS:
        return [f"the VL Whole Slide Microscopy SOP class (it is {header['SOPClassUID'] or 'unknown'})"]
    missing = []
    if not header["ImageType"]:
        missing.append("ImageType (which file is a pyramid level)")
    if not header["TotalPixelMatrixColumns"] or not header["TotalPixelMatrixRows"]:
        missing.append("TotalPixelMatrixColumns/Rows (the slide's size)")
    if not header["DimensionOrganizationType"]:
        missing.append("DimensionOrganizationType (how frames are laid out)")
    if header["DimensionOrganizationType"] != "TILED_FULL" and not header["frame_positions"]:
        missing.append("per-frame positions (PlanePositionSlideSequence)")
    if not header["pixel_spacing"]:
        missing.append("PixelSpacing (µm per pixel)")
    return missing


def refusal_message(path: Path, reader_error: str) -> str:
    """One line: why a DICOM file cannot be read as a slide."""
    missing = nonconformance(path)
    if missing:
        return (f"{path}: not a conformant DICOM whole-slide image; it lacks {'; '.join(missing)} "
                "(convert the original scan with a DICOM WSI converter such as wsidicomizer)")
    return f"{path}: not a readable DICOM whole-slide image ({reader_error})"


# -- the format's declaration ----------------------------------------------------------------

def holds_dicom_files(folder: Path) -> bool:
    """A folder holding DICOM files: one series, one slide (refused when opened if it holds more)."""
    return any(is_dicom_path(p) for p in folder.iterdir())


def series_files(path: Path) -> list[Path]:
    """The files of the slide's series; a file whose header cannot be read stands alone (it is
    refused with its own message when opened), a folder without a series holds none."""
    try:
        return sorted(series_of(path).files)
    except (ValueError, OSError):
        return [] if path.is_dir() else [path]


def main_files(folder: Path) -> dict[Path, Path]:
    """Every file of every series in `folder`, mapped to its series' largest level (its one entry)."""
    found = series_in([p for p in folder.iterdir() if p.is_file() and is_dicom_path(p)])
    return {file: series.main_file for series in found for file in series.files}


def open_dicom_slide(path: Path, mpp: float | None = None):
    """A DICOM WSI series (a folder, or one of its files), read by OpenSlide from its largest level."""
    from .openslide_reader import OpenSlideReader

    series = series_of(path)
    try:
        reader = OpenSlideReader(series.main_file, mpp)
    except ValueError as err:
        raise ValueError(refusal_message(series.main_file, str(err).split(": ", 1)[-1])) from None
    reader.path = Path(path)
    return reader


DICOM_FORMAT = SlideFormat(
    name="dicom", extensions=DICOM_EXTENSIONS, open=open_dicom_slide, files=series_files, folder_slide=holds_dicom_files,
    slide_name=dicom_id_or_none, main_files=main_files,
)
