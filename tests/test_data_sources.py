"""Declared data sources: each loads alone from the real shared images, counts are checked."""

from __future__ import annotations

import dataclasses

import pytest

from ldcsf.cli.main import main
from ldcsf.data.download import DATASETS
from ldcsf.data.manifest import default_labels
from ldcsf.data.pancancer import load_source
from ldcsf.data.sources import SHARED_SOURCES, SharedSource

LABELS = list(default_labels())


def shared_source(name: str) -> SharedSource:
    return next(s for s in SHARED_SOURCES if s.name == name)


def test_every_source_is_declared_once_with_licence_and_citation():
    names = [s.name for s in SHARED_SOURCES] + list(DATASETS)
    assert len(names) == len(set(names))
    for source in [*SHARED_SOURCES, *DATASETS.values()]:
        assert source.licence and source.citation and source.expected_images > 0
    with pytest.raises(ValueError, match="unknown layout 'zip'"):
        SharedSource(name="x", folder="x", layout="zip", expected_images=1, organ=None, licence="", citation="")


def test_a_source_loads_alone_with_its_declared_count(shared_data, tmp_path, caplog):
    frame = load_source(shared_source("osteosarcoma"), shared_data, tmp_path, LABELS, progress=False)
    assert len(frame) == 60 and set(frame["dataset"]) == {"osteosarcoma"} and set(frame["organ"]) == {"bone"}
    assert frame.groupby("source_class").size().to_dict() == {"Non-Tumor": 20, "Non-Viable-Tumor": 20,
                                                               "Viable": 20}
    assert frame["group"].str.startswith("osteosarcoma:Case-").sum() + frame["group"].eq("osteosarcoma:P9").sum() == 60
    assert "expected" not in caplog.text  # the count matches the declaration: no warning
    names = load_source(shared_source("wsss4luad_names"), shared_data, tmp_path, LABELS, progress=False)
    assert len(names) == 4 and names["group"].str.startswith("wsss4luad:slide-").all()
    assert set(names["source_class"]) == {"image-level"} and names["necrosis"].isna().all()


def test_a_count_off_the_declaration_warns_naming_the_source(shared_data, tmp_path, caplog):
    wrong = dataclasses.replace(shared_source("liver_chol"), expected_images=7)
    frame = load_source(wrong, shared_data, tmp_path, LABELS, progress=False)
    assert len(frame) == 6 and (frame["tumor"] == 1).all()
    assert "liver_chol: 6 images in" in caplog.text and "expected 7 (some are missing)" in caplog.text


def test_pixel_mask_source_counts_images_with_a_mask(shared_data, tmp_path, caplog):
    wrong = dataclasses.replace(shared_source("wsss4luad_masks"), expected_images=40)
    tiles = load_source(wrong, shared_data, tmp_path, LABELS, tile_size=224, progress=False)
    assert "wsss4luad_masks: 31 images in" in caplog.text  # 40 masks, 31 of them with their image
    assert len(tiles) > 0 and tiles["group"].str.startswith("wsss4luad:val-").all()
    assert all(p.startswith(str((tmp_path / "wsss4luad" / "tiles").resolve())) for p in tiles["path"])


def test_empty_source_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "nct_crc").mkdir()
    with pytest.raises(ValueError, match=r"nct_crc: no images found \(source nct_crc\)"):
        load_source(shared_source("nct_crc"), tmp_path, tmp_path / "out", LABELS)


def test_data_sources_lists_every_source_as_a_table(capsys):
    assert main(["data", "sources"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["source", "from", "images"]
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith("images:")}
    assert set(rows) == {s.name for s in SHARED_SOURCES} | set(DATASETS)
    assert "1224" in rows["oral"] and "CC0" in rows["oral"]
    assert "100000" in rows["nct-crc-he-100k"] and "zenodo.1214456" in rows["nct-crc-he-100k"]
