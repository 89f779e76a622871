"""What a slide format is: one small declaration per format, made in its reader's module.

A declaration says what the rest of ldcsf needs to know about a format without reading pixels:
its file endings (how a file is recognised, also in a folder search), whether a folder can be
one of its slides, the files that make up one slide, the slide's name, how its files are
grouped into slides when a folder is searched, and how it is opened. `wsi/formats.py` collects the declarations into the one registry that `open_slide`,
cohort discovery, slide ids, fingerprints and the path checks all ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def single_file(path: Path) -> list[Path]:
    """The files of a one-file slide: the file itself."""
    return [path]


@dataclass(frozen=True)
class SlideFormat:
    """One slide format.

    Attributes:
        name: short name, as `ldcsf info` shows it ("openslide", "mirax", "dicom", ...).
        extensions: lower-case file endings, longest first where one ends another (".ome.tif").
        open: `open(path, mpp)` -> SlideReader.
        files: every file one slide is made of (fingerprinted together); the slide file alone
            unless the format spreads a slide over several files.
        folder_slide: whether a folder is one slide of this format (DICOM: it holds a series);
            None for formats whose slides are files, recognised by their ending alone.
        slide_name: the slide's own name (DICOM: its container id), or None to name it by its
            file without the ending.
        main_files: `main_files(folder)`: each file of this format in the folder mapped to its
            slide's one entry (DICOM: every file of a series to its largest level), so a folder
            search lists each slide once; None when every file is its own slide.
    """

    name: str
    extensions: tuple[str, ...]
    open: Callable
    files: Callable[[Path], list[Path]] = single_file
    folder_slide: Callable[[Path], bool] | None = None
    slide_name: Callable[[Path], str | None] | None = None
    main_files: Callable[[Path], dict[Path, Path]] | None = None

    def ending_of(self, name: str) -> str | None:
        """The ending of `name` that is one of this format's, or None."""
        lower = name.lower()
        if not lower.endswith(self.extensions):  # one C call: this is asked of every file a folder search meets
            return None
        return next(ending for ending in self.extensions if lower.endswith(ending))
