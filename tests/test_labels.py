"""The labels live in one module (`ldcsf.labels`): each stated once, and every reader follows it.

The last test adds a fifth label the documented way (docs/architecture.md, "Where to add": a line
in labels.py and a column in a mapping table) to a copy of the package, and checks the model's
defaults, manifests, colours, GeoJSON classes, TSR roles and QuPath targets all take it up.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ldcsf import labels
from ldcsf.labels import Label, check_labels, resolve_label

SRC = Path(__file__).resolve().parents[1] / "src"

#: Files that may spell a label name as a string: the labels module, and declarations of what a
#: source's own classes are called (a mask palette, a file-name label order, the synthetic layout).
DECLARES_SOURCE_CLASSES = {
    "ldcsf/labels.py",
    "ldcsf/data/masks.py",  # WSSS4LUAD's palette classes
    "ldcsf/data/sources.py",  # the order a source's file names list labels in
    "ldcsf/synthetic/layout.py",  # the synthetic layout's classes and its fraction arguments
}
LABEL_SPELLINGS = {"stroma", "tumor", "tumour", "necrosis", "non_tumor", "normal"}


def test_the_four_labels_and_their_roles():
    assert labels.default_labels() == ("stroma", "necrosis", "non_tumor", "tumor")
    assert (labels.STROMA_LABEL, labels.TUMOR_LABEL) == ("stroma", "tumor")
    assert [labels.tsr_role(n) for n in labels.default_labels()] == ["stroma", "neither", "neither", "tumor"]
    assert labels.tsr_role("fat") == "neither" and labels.label_color("fat") is None
    assert labels.display_name("non_tumor") == "non-tumour" and labels.display_name("fat") == "fat"
    assert len({labels.label_color(n) for n in labels.default_labels()}) == 4


@pytest.mark.parametrize("spelling, label", [
    ("normal", "non_tumor"), ("Non-Tumour", "non_tumor"), ("tumour", "tumor"), ("TUMOR", "tumor"),
    ("necrotic", "necrosis"), ("stroma", "stroma"), ("tumour_stroma", "stroma"),
])
def test_synonyms_resolve(spelling, label):
    assert resolve_label(spelling) == label


def test_unknown_spelling_is_named():
    with pytest.raises(ValueError, match=r"unknown label 'fat' \(labels: stroma, necrosis, non_tumor, tumor"):
        resolve_label("fat")


@pytest.mark.parametrize("extra, message", [
    (Label("stroma2", "stroma", (1, 2, 3), "stroma"), "'stroma' and 'stroma2' both have the TSR role 'stroma'"),
    (Label("debris", "debris", (1, 2, 3), synonyms=("Necrotic",)), "'necrosis' and 'debris' both answer to 'Necrotic'"),
    (Label("fat", "fat", (1, 2, 3), "fatty"), "label 'fat': TSR role 'fatty' is not one of stroma, tumor, neither"),
])
def test_a_clash_is_refused(extra, message):
    check_labels([*labels.LABELS, Label("fat", "fat", (9, 9, 9))])  # a plain new label is fine
    with pytest.raises(ValueError, match=message):
        check_labels([*labels.LABELS, extra])


def test_without_a_tumour_label_there_is_no_tsr():
    with pytest.raises(ValueError, match="no label has the TSR role 'tumor'"):
        check_labels([label for label in labels.LABELS if label.name != "tumor"])


def test_shipped_mapping_tables_map_to_the_labels():
    """A mapping table's label columns (and QuPath targets) are labels of ldcsf.labels, never new spellings."""
    from ldcsf.data.mapping import read_mapping, shipped_mappings
    from ldcsf.data.qupath import TARGETS, read_class_mapping

    for name in shipped_mappings():
        if name == "qupath":
            assert set(read_class_mapping(name).values()) <= set(TARGETS)
        else:
            assert set(read_mapping(name).columns) <= set(labels.default_labels()), name
    assert set(TARGETS) == {*labels.default_labels(), "background", "ignore"}


def string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in a file that is not a docstring."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_label_names_are_spelled_in_labels_py_only():
    """Code reads label names from ldcsf.labels; only declarations of a source's classes spell them."""
    found = []
    for path in sorted((SRC / "ldcsf").rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in DECLARES_SOURCE_CLASSES:
            continue
        found += [f"{name}:{line}: {value!r}" for line, value in string_constants(path) if value in LABEL_SPELLINGS]
    assert not found, "label names written out instead of read from ldcsf.labels:\n" + "\n".join(found)


def test_data_learns_the_labels_without_the_model_package():
    """`data` reads ldcsf.labels: neither ldcsf.models nor torch is imported to learn four strings."""
    code = ("import sys; from ldcsf.data.manifest import default_labels; from ldcsf.data.mapping import read_mapping; "
            "import ldcsf; assert default_labels() == ldcsf.DEFAULT_LABELS; "
            "print(sorted(m for m in ('ldcsf.models', 'torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


FIFTH_LABEL = '    Label("lymphocytes", "lymphocytes", (200, 0, 200), "neither", ("lympho", "immune cells")),\n'

#: Run inside the copy of the package that has the fifth label; every check asserts.
CHECKS = textwrap.dedent("""
    import sys
    from pathlib import Path

    import numpy as np
    import pandas as pd

    import ldcsf
    from ldcsf import labels
    from ldcsf.analysis import compute_tsr
    from ldcsf.analysis.tile_table import tile_table_columns
    from ldcsf.data import qupath
    from ldcsf.data.manifest import default_labels
    from ldcsf.data.pancancer import load_source
    from ldcsf.data.sources import SHARED_SOURCES
    from ldcsf.export.colors import label_colors
    from ldcsf.export.geojson import tiles_to_geojson
    from ldcsf.models.base import DEFAULT_LABELS, resolve_labels

    assert ldcsf.__file__.startswith(sys.argv[1]), ldcsf.__file__  # the copy, not the checkout
    five = ["stroma", "necrosis", "non_tumor", "tumor", "lymphocytes"]
    assert list(labels.default_labels()) == list(default_labels()) == list(DEFAULT_LABELS) == five
    assert list(ldcsf.DEFAULT_LABELS) == five and resolve_labels(None, None) == five
    assert labels.resolve_label("Immune cells") == "lymphocytes" and labels.tsr_role("lymphocytes") == "neither"

    # colours and GeoJSON classes: the declared colour, not a fallback
    assert label_colors(five)["lymphocytes"] == (200, 0, 200)
    probs = [[0.1, 0.0, 0.2, 0.9, 0.3], [0.7, 0.0, 0.1, 0.2, 0.95], [0.2, 0.1, 0.1, 0.1, 0.8]]
    rows = []
    for i, p in enumerate(probs):
        row = {"tile_id": i, "row": 0, "col": i, "x": 100 * i, "y": 0, "width": 100, "height": 100,
               "tissue_fraction": 1.0, "tissue_area_mm2": 0.01}
        row.update({f"prob_{n}": v for n, v in zip(five, p)})
        row.update({f"pred_{n}": int(v >= 0.5) for n, v in zip(five, p)})
        rows.append(row)
    tiles = pd.DataFrame(rows, columns=tile_table_columns(five))
    classes = [f["properties"]["classification"] for f in tiles_to_geojson(tiles, five)["features"]]
    assert classes == [{"name": "tumor", "color": [255, 200, 0]}, {"name": "lymphocytes", "color": [200, 0, 200]},
                       {"name": "lymphocytes", "color": [200, 0, 200]}], classes

    # TSR: the new label (role neither) has an area but counts in neither stroma nor tumour
    tsr = compute_tsr(tiles, five)
    stroma, tumor = 0.01 * (0.1 + 0.7 + 0.2), 0.01 * (0.9 + 0.2 + 0.1)
    assert abs(tsr.stroma_fraction - stroma / (stroma + tumor)) < 1e-9, tsr
    assert abs(tsr.area_mm2_by_label["lymphocytes"] - 0.01 * 2.05) < 1e-9

    # QuPath regions can be mapped to it: a raster code past the palette, stored as background for the area head
    assert "lymphocytes" in qupath.TARGETS and qupath._CODE["lymphocytes"] == 5
    assert qupath.mask_png_values(np.array([[0, 4, 5, 255]], dtype=np.uint8)).tolist() == [[0, 3, 3, 255]]

    # the mapping table's new column labels real NCT-CRC-HE tiles
    nct = next(s for s in SHARED_SOURCES if s.name == "nct_crc")
    frame = load_source(nct, Path(sys.argv[2]), Path(sys.argv[3]), five, progress=False)
    lym = frame["source_class"] == "LYM"
    assert lym.sum() > 0 and (frame.loc[lym, "lymphocytes"] == 1).all() and (frame.loc[~lym, "lymphocytes"] == 0).all()
    print("ok", len(frame), int(lym.sum()))
""")


def add_fifth_label(package: Path) -> None:
    """The documented path: one line in labels.py, one column in the mapping table of a source that has the class."""
    labels_py = package / "labels.py"
    text = labels_py.read_text()
    anchor = '    Label("tumor", '
    assert text.count(anchor) == 1
    end = text.index("\n", text.index(anchor)) + 1
    labels_py.write_text(text[:end] + FIFTH_LABEL + text[end:])
    table = package / "data" / "mappings" / "nct_crc_he_100k.csv"
    lines = table.read_text().splitlines()
    header, rows = lines[0].split(","), lines[1:]
    at = header.index("note")
    out = [",".join(header[:at] + ["lymphocytes"] + header[at:])]
    for row in rows:
        cells = row.split(",", at)  # the note may hold commas: split only before it
        out.append(",".join(cells[:at] + ["1" if cells[0] == "LYM" else "0"] + cells[at:]))
    table.write_text("\n".join(out) + "\n")


def test_a_fifth_label_added_in_labels_py_reaches_every_reader(shared_data, tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(SRC / "ldcsf", copy / "ldcsf", ignore=shutil.ignore_patterns("__pycache__", "shipped"))
    add_fifth_label(copy / "ldcsf")
    out = subprocess.run([sys.executable, "-c", CHECKS, str(copy), str(shared_data), str(tmp_path / "out")],
                         env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok 42 ")
