"""MIRAX slides (3DHISTECH .mrxs): one slide is the .mrxs index file and the folder of the same
name beside it (Slidedat.ini, Index.dat, Data*.dat). OpenSlide reads the pixels; what is
declared here is which files belong to the slide, so that all of them are fingerprinted."""

from __future__ import annotations

from pathlib import Path

from .openslide_reader import OpenSlideReader
from .slide_format import SlideFormat


def mirax_files(path: Path) -> list[Path]:
    """The .mrxs file, then every file of its data folder (none when the folder is missing:
    OpenSlide then refuses the slide with its own message)."""
    folder = path.with_suffix("")
    data = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return [path, *data]


MIRAX_FORMAT = SlideFormat(name="mirax", extensions=(".mrxs",), open=OpenSlideReader, files=mirax_files)
