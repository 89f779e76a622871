"""The format registry (`wsi/formats.py`) decides what a slide is: its files, its name, how a
folder search finds it, and which paths are refused before a reader runs.

No real MIRAX slide is in the shared data, so the MIRAX tests build its layout of files (an
.mrxs index and a folder of the same name) with placeholder bytes: they test identity and
discovery, not pixels.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ldcsf.wholeslide import collect_slides, slide_id_for
from ldcsf.wholeslide.fingerprint import slide_identity
from ldcsf.wsi import formats, open_slide
from ldcsf.wsi.slide_format import SlideFormat

CMU = "slides/CMU-1-Small-Region.svs"
SRC = Path(__file__).resolve().parents[1] / "src" / "ldcsf"


@pytest.fixture
def mirax(tmp_path) -> Path:
    """A MIRAX layout: case.mrxs and case/ with its index, settings and data files."""
    index = tmp_path / "slides" / "case.mrxs"
    (index.with_suffix("")).mkdir(parents=True)
    index.write_bytes(b"[GENERAL]\n")
    for name in ("Slidedat.ini", "Index.dat", "Data0000.dat", "Data0001.dat"):
        (index.with_suffix("") / name).write_bytes(name.encode() * 100)
    return index


def test_a_mirax_slide_is_its_index_and_its_folders_files(mirax):
    folder = mirax.with_suffix("")
    assert formats.format_of(mirax).name == "mirax"
    assert formats.slide_files(mirax) == [mirax, *sorted(folder.iterdir())]
    before = slide_identity(mirax)
    assert before["size"] == sum(p.stat().st_size for p in formats.slide_files(mirax))

    data = folder / "Data0001.dat"
    data.write_bytes(data.read_bytes()[::-1])  # same size, other pixels
    assert slide_identity(mirax)["sha256_head_tail"] != before["sha256_head_tail"]
    (folder / "Data0002.dat").write_bytes(b"more")  # a file added to the slide
    assert slide_identity(mirax)["size"] == before["size"] + 4


def test_a_folder_search_lists_a_mirax_slide_once_by_its_index(mirax):
    (mirax.parent / "other.svs").write_bytes(b"x")
    assert collect_slides([mirax.parent]) == [mirax, mirax.parent / "other.svs"]
    assert slide_id_for(mirax) == "case"
    with pytest.raises(ValueError, match="case: a folder, not a slide file"):
        formats.check_slide_path(mirax.with_suffix(""))  # the data folder alone is no slide
    with pytest.raises(ValueError, match=r"case\.mrxs: not a readable slide"):
        open_slide(mirax)  # placeholder bytes: OpenSlide refuses them in one line


def test_cohort_discovery_asks_the_registry(tmp_path, monkeypatch):
    """A format added to the registry is found, named and fingerprinted with its files."""
    folder = tmp_path / "cohort"
    (folder / "s1_data").mkdir(parents=True)
    (folder / "s1.two").write_bytes(b"head")
    (folder / "s1_data" / "pixels.bin").write_bytes(b"pixels")
    two_files = SlideFormat(name="two-file", extensions=(".two",), open=lambda path, mpp: None,
                            files=lambda p: [p, p.parent / f"{p.stem}_data" / "pixels.bin"])
    with pytest.raises(ValueError, match="no slide files in this folder"):
        collect_slides([folder])
    monkeypatch.setattr(formats, "FORMATS", (*formats.FORMATS, two_files))
    assert collect_slides([folder]) == [folder / "s1.two"]
    assert slide_id_for(folder / "s1.two") == "s1"
    assert slide_identity(folder / "s1.two")["size"] == len(b"head") + len(b"pixels")


def test_slide_names_and_files_of_the_real_slides(shared_data):
    slides = shared_data / "slides"
    assert formats.format_of(slides / CMU.split("/")[1]).name == "openslide"
    assert formats.slide_files(shared_data / CMU) == [shared_data / CMU]
    assert formats.slide_name(shared_data / CMU) == "CMU-1-Small-Region"
    assert formats.slide_name(Path("x/board.OME.tiff")) == "board"  # the two-part ending comes off whole
    assert collect_slides([slides]) == sorted(slides.iterdir())


def test_wholeslide_holds_no_format_knowledge():
    """No file endings and no DICOM calls outside wsi/: the registry answers for them."""
    endings = {e for f in formats.FORMATS for e in f.extensions}
    for path in sorted((SRC / "wholeslide").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "dicom" not in (node.module or ""), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value.lower() not in endings, f"{path.name} names the ending {node.value!r}"
