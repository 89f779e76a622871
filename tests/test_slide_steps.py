"""The slide pipeline's steps, each alone: plan, analyse, write; and run_slide's typed result."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import openslide
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.analysis import compute_tsr
from ldcsf.analysis.hotspot import HotspotSearch, search_hotspot
from ldcsf.analysis.slide_analysis import SlideAnalysis, analyse_slide
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.export.slide_outputs import read_cohort_row, write_slide_outputs
from ldcsf.export.tables import read_tile_table
from ldcsf.wholeslide.pipeline import SlideResult, SlideSettings, run_slide
from ldcsf.wholeslide.plan import NoTissueError, SlidePlan, parts_fingerprint, plan_slide, recorded_settings
from ldcsf.wsi import write_pyramidal_tiff
from tile_grids import tile_table_from_grids

CMU = "slides/CMU-1-Small-Region.svs"
LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]
THRESHOLDS = [0.5, 0.4, 0.5, 0.45]
# 64 px at 2 µm/px: 256 level-0 px tiles on the 0.499 µm/px CMU slide.
SETTINGS = SlideSettings(batch_size=8, num_workers=0, accelerator="cpu", devices=1, progress=False)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", img_size=64)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model, CheckpointMeta.for_model(model, mpp=2.0))
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def cmu_plan(shared_data, loaded) -> SlidePlan:
    return plan_slide(shared_data / CMU, loaded.meta, SETTINGS, "CMU")


def test_plan_on_the_real_slide_matches_openslide(shared_data, cmu_plan):
    with openslide.OpenSlide(str(shared_data / CMU)) as slide:
        dimensions = slide.dimensions
        mpp = float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
    plan = cmu_plan
    assert plan.dimensions == dimensions and plan.mpp == pytest.approx(mpp)
    assert plan.spec.tile_size == round(64 * 2.0 / mpp) == plan.spec.stride  # no overlap
    assert max(plan.thumbnail.size) <= 2048
    assert plan.thumbnail_downsample == pytest.approx(dimensions[0] / plan.thumbnail.size[0], rel=0.01)
    tiles = plan.tiles
    assert len(tiles) > 10 and (tiles["width"] == plan.spec.tile_size).all()
    assert (tiles["x"] >= 0).all() and (tiles["y"] >= 0).all()
    assert (tiles["x"] < dimensions[0]).all() and (tiles["y"] < dimensions[1]).all()
    assert (tiles["tissue_fraction"] >= SETTINGS.min_tissue).all()
    assert 0 < plan.tissue.fraction < 1  # the slide shows tissue and glass
    assert plan.boxes.shape == (len(tiles), 4)


def test_plan_settings_shape_the_tiles(shared_data, loaded, cmu_plan):
    overlapping = plan_slide(shared_data / CMU, loaded.meta, dataclasses.replace(SETTINGS, overlap=0.5), "CMU")
    assert overlapping.spec.stride == cmu_plan.spec.tile_size // 2
    assert len(overlapping.tiles) > 2 * len(cmu_plan.tiles)
    limited = plan_slide(shared_data / CMU, loaded.meta, dataclasses.replace(SETTINGS, limit_tiles=5), "CMU")
    assert limited.tiles.equals(cmu_plan.tiles.head(5))
    # --mpp replaces the file's µm/px for the tiles; the plan keeps both, so the record says whose scale it is
    told_settings = dataclasses.replace(SETTINGS, mpp=0.6)
    told = plan_slide(shared_data / CMU, loaded.meta, told_settings, "CMU")
    recorded = recorded_settings(told, loaded, told_settings, None)
    assert (told.mpp, recorded["slide_mpp_source"], told.header_mpp) == (0.6, "user override", cmu_plan.mpp)
    assert (recorded["slide_mpp"], recorded["header_mpp"]) == (0.6, cmu_plan.mpp)
    assert told.spec.tile_size < cmu_plan.spec.tile_size  # fewer level-0 px per tile at a coarser stated scale


def test_plan_of_a_blank_slide_says_there_is_no_tissue(tmp_path, loaded):
    slide = write_pyramidal_tiff(tmp_path / "glass.tiff", np.full((1024, 1024, 3), 242, np.uint8), mpp=0.5,
                                 tile_size=256, compression="deflate")
    with pytest.raises(NoTissueError, match=r"glass\.tiff: no tissue found"):
        plan_slide(slide, loaded.meta, SETTINGS, "glass")


def test_parts_fingerprint_keeps_the_earlier_content(shared_data, loaded, cmu_plan):
    """The content earlier versions wrote to .parts/settings.json, so their parts still resume."""
    meta, slide = loaded.meta, shared_data / CMU
    fingerprint = parts_fingerprint(cmu_plan, loaded, SETTINGS, None)
    assert fingerprint == {
        "slide": {"path": str(slide.resolve()), "size": slide.stat().st_size, "mtime_ns": slide.stat().st_mtime_ns},
        "checkpoint": {"path": str(loaded.path.resolve()), "size": loaded.path.stat().st_size,
                       "mtime_ns": loaded.path.stat().st_mtime_ns},
        "n_tiles": len(cmu_plan.tiles), "labels": list(meta.labels), "tile_size_px": 64, "tile_mpp": 2.0,
        "slide_mpp": cmu_plan.mpp, "tile_size_level0_px": cmu_plan.spec.tile_size,
        "stride_level0_px": cmu_plan.spec.stride, "min_tissue": SETTINGS.min_tissue, "overlap": 0.0,
        "limit_tiles": None, "tta": False, "stain_norm": None,
    }
    assert parts_fingerprint(cmu_plan, loaded, dataclasses.replace(SETTINGS, tta=True), None) != fingerprint
    recorded = recorded_settings(cmu_plan, loaded, SETTINGS, None)
    assert list(recorded)[:13] == ["checkpoint", "model_name", "model_code_version", "code_version", "labels",
                                   "thresholds", "tile_size_px", "tile_mpp", "slide_mpp", "slide_mpp_source",
                                   "header_mpp", "tile_size_level0_px", "stride_level0_px"]
    # whose µm/px the TSR was cut at: here the file's own
    assert (recorded["slide_mpp_source"], recorded["header_mpp"]) == ("file metadata", cmu_plan.mpp)
    assert not {"mpp", "progress", "overwrite", "strict"} & set(recorded)


def synthetic_table():
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[:20, :24]
    blob = np.exp(-(((rows - 10) / 4.0) ** 2 + ((cols - 12) / 5.0) ** 2))
    stroma = np.clip(0.1 + 0.8 * blob + rng.normal(0, 0.05, blob.shape), 0, 1)
    probs = {"stroma": stroma, "necrosis": rng.random(blob.shape) * 0.3, "non_tumor": rng.random(blob.shape) * 0.3,
             "tumor": np.clip(1 - stroma, 0, 1)}
    return tile_table_from_grids(probs, tile_size=224, mpp=0.5, thresholds=THRESHOLDS)


def test_analyse_step_alone_on_a_tile_table():
    tiles = synthetic_table()
    dimensions = (24 * 224, 20 * 224)
    analysis = analyse_slide(tiles, LABELS, THRESHOLDS, 0.5, dimensions, field_diameter_um=1100.0)
    assert analysis.tsr == compute_tsr(tiles, LABELS)
    expected = search_hotspot(tiles, 0.5, field_diameter_um=1100.0, dimensions=dimensions)
    assert analysis.hotspot is not None and analysis.hotspot == expected.hotspot
    assert analysis.hotspot.stroma_fraction > analysis.tsr.stroma_fraction  # the blob is richer than the slide
    assert [row["label"] for row in analysis.label_summary] == LABELS
    stroma = analysis.label_summary[0]
    assert stroma["n_positive"] == int((tiles["prob_stroma"] >= 0.5).sum())
    assert stroma["mean_prob"] == pytest.approx(tiles["prob_stroma"].mean())
    assert analysis.tsr.weighting == "probability" and analysis.area_maps is None

    with_areas = tiles.assign(**{f"area_{n}": tiles[f"prob_{n}"] * 0.5 for n in LABELS})
    assert analyse_slide(with_areas, LABELS, THRESHOLDS, 0.5, dimensions).tsr.weighting == "estimated_area"
    with pytest.raises(ValueError, match=r"^case7: 3 thresholds for 4 labels"):
        analyse_slide(tiles, LABELS, THRESHOLDS[:3], 0.5, dimensions, slide_id="case7")


def test_write_step_writes_the_numbers_it_is_given(tmp_path):
    """The writer computes nothing: numbers set by hand in the analysis are the ones written."""
    tiles = synthetic_table()
    dimensions = (24 * 224, 20 * 224)
    analysis = analyse_slide(tiles, LABELS, THRESHOLDS, 0.5, dimensions, field_diameter_um=1100.0)
    given = dataclasses.replace(
        analysis,
        tsr=dataclasses.replace(analysis.tsr, stroma_fraction=0.123, tsr=7.13, category="stroma-low"),
        hotspot_search=HotspotSearch(None, 5, 0, "no field qualifies (set by hand)"),
    )
    thumbnail = Image.fromarray(np.full((280, 336, 3), 230, np.uint8))
    row = write_slide_outputs(tmp_path, given, slide_id="hand", slide_path="/slides/hand.svs", thumbnail=thumbnail,
                              thumbnail_downsample=16.0, settings={"checkpoint": "/ckpt/m.pt"})
    assert (row["stroma_fraction"], row["tsr"], row["category"]) == (0.123, 7.13, "stroma-low")
    assert row["hotspot_x"] is None and read_cohort_row(tmp_path) == row
    data = json.loads((tmp_path / "tsr.json").read_text())
    assert data["tsr"]["stroma_fraction"] == 0.123 and data["hotspot"] is None
    assert data["hotspot_search"]["n_candidate_fields"] == 5 and data["hotspot_search"]["field_diameter_um"] == 1100.0
    assert data["label_summary"] == analysis.label_summary and data["dimensions"] == list(dimensions)
    assert "no field qualifies (set by hand)" in (tmp_path / "report.html").read_text()
    assert read_tile_table(tmp_path / "tiles.parquet").equals(tiles)


def test_run_slide_returns_its_steps_and_skips_a_finished_slide(shared_data, loaded, tmp_path):
    settings = dataclasses.replace(SETTINGS, limit_tiles=6)
    result = run_slide(shared_data / CMU, loaded, tmp_path / "cmu", settings)
    assert isinstance(result, SlideResult) and result.status == "ok" and result.written
    assert isinstance(result.analysis, SlideAnalysis) and len(result.plan.tiles) == 6
    assert result.row == read_cohort_row(tmp_path / "cmu")
    assert result.row["stroma_fraction"] == pytest.approx(result.analysis.tsr.stroma_fraction)
    assert not (tmp_path / "cmu" / ".parts").exists()  # the parts go once the outputs are written

    again = run_slide(shared_data / CMU, loaded, tmp_path / "cmu", settings)
    assert again.status == "skipped" and again.plan is None and again.analysis is None
    assert again.row == {**result.row, "status": "skipped"}
