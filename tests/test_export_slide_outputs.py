"""analyse_slide + write_slide_outputs on a synthetic slide: every file, its contents, and crash safety."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.analysis import compute_tsr, find_hotspot
from ldcsf.analysis.slide_analysis import analyse_slide
from tile_grids import tile_table_from_grids
from ldcsf.export import figures
from ldcsf.export.slide_outputs import cohort_summary_columns, read_cohort_row, write_slide_outputs
from ldcsf.export.tables import read_tile_table

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]
THRESHOLDS = [0.5, 0.4, 0.5, 0.45]
TILE, MPP, DOWNSAMPLE = 224, 0.5, 16.0
SHAPE = (24, 32)  # 24 x 32 tiles of 112 µm: a 2.7 x 3.6 mm piece of tissue
EXPECTED_FILES = ["tiles.parquet", "tiles.csv", "tsr.json", "overlay.png", "tiles.geojson", "report.html"] + [
    f"heatmap_{n}.png" for n in LABELS
]


def synthetic_slide():
    rng = np.random.default_rng(11)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    # a stroma-rich blob inside tumour, some necrosis, a background margin without tissue
    blob = np.exp(-(((rows - 12) / 5.0) ** 2 + ((cols - 16) / 6.0) ** 2))
    stroma = np.clip(0.15 + 0.8 * blob + rng.normal(0, 0.05, SHAPE), 0, 1)
    tissue = np.ones(SHAPE)
    tissue[:2, :] = 0
    tissue[:, -2:] = 0.4
    probs = {
        "stroma": stroma,
        "necrosis": np.clip(rng.random(SHAPE) * 0.5, 0, 1),
        "non_tumor": np.clip(rng.random(SHAPE) * 0.3, 0, 1),
        "tumor": np.clip(1 - stroma + rng.normal(0, 0.05, SHAPE), 0, 1),
    }
    tiles = tile_table_from_grids(probs, tile_size=TILE, mpp=MPP, tissue_fraction=tissue, thresholds=THRESHOLDS)
    dimensions = (SHAPE[1] * TILE + 50, SHAPE[0] * TILE + 30)
    thumb_size = (round(dimensions[0] / DOWNSAMPLE), round(dimensions[1] / DOWNSAMPLE))
    thumbnail = Image.fromarray(rng.integers(170, 250, (thumb_size[1], thumb_size[0], 3), dtype=np.uint8))
    return tiles, dimensions, thumbnail


def write(out_dir, tiles, dimensions, thumbnail):
    """The analyse step, then the write step, as the slide pipeline runs them."""
    analysis = analyse_slide(tiles, LABELS, THRESHOLDS, MPP, dimensions, field_diameter_um=1100.0,
                             slide_id="case<01>&b")
    return write_slide_outputs(
        out_dir, analysis, slide_id="case<01>&b", slide_path="/slides/case01.svs", thumbnail=thumbnail,
        thumbnail_downsample=DOWNSAMPLE,
        settings={"model": "ldcsf_swin_micro", "checkpoint": "/ckpt/best.safetensors", "tile_size": TILE, "mpp": MPP,
                  "thresholds": THRESHOLDS, "version": "0.1.0"},
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("slide")
    tiles, dimensions, thumbnail = synthetic_slide()
    row = write(out_dir, tiles, dimensions, thumbnail)
    return out_dir, tiles, row


def test_every_file_is_written_and_nothing_else(written):
    out_dir, _, _ = written
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(EXPECTED_FILES)  # no temp files left


def test_cohort_row_and_tsr_json_match_compute_tsr(written):
    out_dir, tiles, row = written
    assert list(row) == cohort_summary_columns
    expected = compute_tsr(tiles, LABELS)
    # the export searches only fields that lie wholly on the slide
    dimensions = tuple(json.loads((out_dir / "tsr.json").read_text())["dimensions"])
    hotspot = find_hotspot(tiles, MPP, field_diameter_um=1100.0, dimensions=dimensions)
    assert hotspot is not None
    assert row["status"] == "ok" and row["error"] == ""
    assert row["stroma_fraction"] == pytest.approx(expected.stroma_fraction)
    assert row["tsr"] == pytest.approx(expected.tsr)
    assert row["category"] == expected.category
    assert (row["hotspot_x"], row["hotspot_y"]) == (hotspot.x, hotspot.y)
    assert row["hotspot_stroma_fraction"] == pytest.approx(hotspot.stroma_fraction)
    assert row["hotspot_stroma_fraction"] > row["stroma_fraction"]  # the blob is richer than the slide
    assert row["n_tiles"] == len(tiles)

    data = json.loads((out_dir / "tsr.json").read_text())
    interval_keys = {"stroma_fraction_interval", "interval_method", "near_cutoff"}  # analysis.uncertainty
    assert data["tsr"] == expected.to_dict() | {k: data["tsr"][k] for k in interval_keys}
    assert data["hotspot"] == hotspot.to_dict() | {k: data["hotspot"][k] for k in interval_keys}
    assert data["settings"]["checkpoint"] == "/ckpt/best.safetensors"
    assert data["labels"] == LABELS and data["thresholds"] == THRESHOLDS
    assert read_cohort_row(out_dir) == row


def test_tables_reload_equal_to_the_input(written):
    out_dir, tiles, _ = written
    pd.testing.assert_frame_equal(read_tile_table(out_dir / "tiles.parquet"), tiles)
    pd.testing.assert_frame_equal(read_tile_table(out_dir / "tiles.csv"), tiles)


def test_pictures_open_with_sensible_sizes(written):
    out_dir, _, _ = written
    for name in ["overlay.png"] + [f"heatmap_{n}.png" for n in LABELS]:
        with Image.open(out_dir / name) as image:
            image.load()
            width, height = image.size
            assert 900 <= width <= 1100 and 300 <= height <= 1400, (name, image.size)
            rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
            packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            assert np.unique(packed).size > 20  # a picture, not a blank canvas


def test_geojson_counts_match_the_table(written):
    out_dir, tiles, _ = written
    features = json.loads((out_dir / "tiles.geojson").read_text())["features"]
    assert sum(f["properties"]["objectType"] == "tile" for f in features) == len(tiles)
    assert sum(f["properties"]["objectType"] == "annotation" for f in features) == 1


def test_report_is_self_contained_and_shows_the_numbers(written):
    out_dir, tiles, row = written
    html = (out_dir / "report.html").read_text()
    assert "case&lt;01&gt;&amp;b" in html and "case<01>" not in html  # escaped
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 1 + len(LABELS)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', html)
    assert f"{row['stroma_fraction']:.1%}" in html
    assert f"{row['hotspot_stroma_fraction']:.1%}" in html
    assert f"{row['tsr']:.3f}" in html
    assert str(len(tiles)) in html and row["category"] in html and "ldcsf_swin_micro" in html
    for name in LABELS:
        assert f">{name}</td>" in html


def test_failure_midway_leaves_no_tsr_json(tmp_path, monkeypatch):
    tiles, dimensions, thumbnail = synthetic_slide()
    (tmp_path / "tsr.json").write_text("{}")  # from an earlier run: must not survive a failed rerun

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(figures, "plot_probability_heatmap", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        write(tmp_path, tiles, dimensions, thumbnail)
    names = {p.name for p in tmp_path.iterdir()}
    assert "tsr.json" not in names and "report.html" not in names
    assert not [n for n in names if n.endswith(".tmp") or ".tmp." in n]


def test_bad_tile_table_names_the_slide(tmp_path):
    tiles, dimensions, thumbnail = synthetic_slide()
    with pytest.raises(ValueError, match=r"case<01>&b: tile table: missing column\(s\) prob_tumor"):
        write(tmp_path, tiles.drop(columns=["prob_tumor"]), dimensions, thumbnail)
    assert not (tmp_path / "tsr.json").exists()


def test_slide_without_stroma_or_hotspot_is_reported_not_failed(tmp_path):
    tiles, dimensions, thumbnail = synthetic_slide()
    tiles["prob_stroma"], tiles["pred_stroma"] = 0.0, 0  # no stroma: tumour/stroma is infinite
    tiles["pred_tumor"] = 0  # no tumour decisions: no field has tumour at its borders
    row = write(tmp_path, tiles, dimensions, thumbnail)
    assert row["tsr"] is None and row["stroma_fraction"] == 0.0 and row["category"] == "stroma-low"
    assert row["hotspot_x"] is None and row["hotspot_stroma_fraction"] is None
    data = json.loads((tmp_path / "tsr.json").read_text())
    assert data["tsr"]["note"].startswith("no stroma")
    assert data["hotspot"] is None and "four borders" in data["hotspot_search"]["note"]
    assert "No hotspot: no 1.1 mm field has tumour at all four borders" in (tmp_path / "report.html").read_text()
