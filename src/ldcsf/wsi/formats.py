"""The registry of slide formats, and the questions about a slide path that only formats answer.

Each reader module declares its format (`SlideFormat`, `slide_format.py`); this list collects
them. `open_slide`, cohort discovery, slide ids, fingerprints and the path checks all ask here,
so nothing outside `wsi/` knows a file ending. A new format is one module with its declaration
and one line in `FORMATS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from ..utils.paths import printable_name
from .dicom import DICOM_FORMAT
from .mirax import MIRAX_FORMAT
from .openslide_reader import OPENSLIDE_FORMAT
from .picture_reader import PICTURE_FORMAT
from .slide_format import SlideFormat
from .tifffile_reader import OME_TIFF_FORMAT

#: Asked in this order: longer endings before the shorter ones they end with (.ome.tif before
#: OpenSlide's .tif).
FORMATS: tuple[SlideFormat, ...] = (
    DICOM_FORMAT,
    OME_TIFF_FORMAT,
    MIRAX_FORMAT,
    OPENSLIDE_FORMAT,
    PICTURE_FORMAT,
)

#: Every file ending a slide format has (folder searches look for these).
SLIDE_EXTENSIONS: tuple[str, ...] = tuple(dict.fromkeys(e for f in FORMATS for e in f.extensions))


def format_of(path: str | Path) -> SlideFormat | None:
    """The format a path is a slide of, or None (an unknown ending, or a folder no format claims)."""
    path = Path(path)
    if path.is_dir():  # one stat: this is asked for every slide of a cohort
        return next((fmt for fmt in FORMATS if fmt.folder_slide is not None and fmt.folder_slide(path)), None)
    return next((fmt for fmt in FORMATS if fmt.ending_of(path.name)), None)


def named_like_a_slide(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(fmt.extensions) for fmt in FORMATS)


def slide_files(path: str | Path) -> list[Path]:
    """Every file one slide is made of (a DICOM series' files, a MIRAX index and its folder's files)."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is not None:
        return fmt.files(path)
    return [] if path.is_dir() else [path]  # a folder that is no slide: refused when opened


def slide_name(path: str | Path) -> str:
    """A slide's name: the format's own (a DICOM container id), or its file name without the ending.

    Any bytes a file system allows in a name become text. `wholeslide` makes it a safe folder name.
    """
    path = Path(path)
    fmt = format_of(path)
    own = fmt.slide_name(path) if fmt is not None and fmt.slide_name is not None else None
    if own is not None:
        return own
    name = Path(printable_name(path)).name
    ending = fmt.ending_of(name) if fmt is not None else None
    return name[: -len(ending)] if ending else Path(name).stem


def check_slide_path(path: str | Path) -> None:
    """FileNotFoundError / ValueError (one line) for a path that cannot be a slide, before any reader runs."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(f"{path}: a symbolic link that leads to no file (a loop, or its target "
                                "was removed); link the slide file itself")
    if not path.exists():
        raise FileNotFoundError(f"{path}: slide not found")
    if path.is_dir() and format_of(path) is None:
        raise ValueError(f"{path}: a folder, not a slide file (nor a slide format's folder, such as a DICOM "
                         "series); give the slide file, or a folder of slides to search")
    if not (path.is_file() or path.is_dir()):  # reading a pipe or device would block forever
        raise ValueError(f"{path}: not a regular file (a pipe or device?); give the slide file itself")


def find_slides(folder: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Files under `folder` (recursively) whose ending is a slide format's, outside `exclude`."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and named_like_a_slide(path) and not _is_under(path, exclude):
            yield path


def one_entry_per_slide(paths: Iterable[Path]) -> list[Path]:
    """The paths, in order, with the files of one multi-file slide given as one entry.

    Formats with `main_files` (DICOM: the files of a series) map each of their files to the
    slide's entry; unreadable files stay as given, to fail with their own message when opened.
    """
    paths = list(paths)
    main_of: dict[Path, Path] = {}
    for fmt in FORMATS:
        if fmt.main_files is None:
            continue
        folders = dict.fromkeys(p.parent for p in paths if fmt.ending_of(p.name) and p.is_file())
        for folder in folders:
            try:
                main_of.update(fmt.main_files(folder))
            except (ValueError, OSError):
                continue
    return list(dict.fromkeys(main_of.get(p, p) for p in paths))  # ordered, each entry once


def _is_under(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
