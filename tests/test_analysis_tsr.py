"""Slide-level TSR arithmetic on small tile tables whose answers are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ldcsf.analysis import compute_tsr
from ldcsf.analysis.tile_table import tile_table_columns
from tile_grids import tile_table_from_grids

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def table(rows: list[dict], labels=LABELS) -> pd.DataFrame:
    """Tiles on one grid row, 100 px each; every value not given is 0."""
    records = []
    for i, values in enumerate(rows):
        record = {"tile_id": i, "row": 0, "col": i, "x": 100 * i, "y": 0, "width": 100, "height": 100,
                  "tissue_fraction": values.get("tissue_fraction", 1.0), "tissue_area_mm2": values.get("area", 0.01)}
        for name in labels:
            record[f"prob_{name}"] = values.get(name, 0.0)
        for name in labels:
            record[f"pred_{name}"] = int(values.get(name, 0.0) >= 0.5)
        records.append(record)
    return pd.DataFrame(records, columns=tile_table_columns(labels))


def test_probability_and_decision_weighting_by_hand():
    tiles = table([
        {"stroma": 0.9, "tumor": 0.2, "area": 0.02},
        {"stroma": 0.6, "tumor": 0.7, "area": 0.01},  # multi-label: counts for both
        {"stroma": 0.1, "tumor": 0.8, "area": 0.04},
        {"necrosis": 0.9, "area": 0.03},
    ])
    prob = compute_tsr(tiles, LABELS)
    stroma = 0.02 * 0.9 + 0.01 * 0.6 + 0.04 * 0.1
    tumor = 0.02 * 0.2 + 0.01 * 0.7 + 0.04 * 0.8
    assert prob.weighting == "probability"
    assert prob.stroma_area_mm2 == pytest.approx(stroma)
    assert prob.tumor_area_mm2 == pytest.approx(tumor)
    assert prob.stroma_fraction == pytest.approx(stroma / (stroma + tumor))
    assert prob.tsr == pytest.approx(tumor / stroma)
    assert prob.category == "stroma-low"
    assert prob.tissue_area_mm2 == pytest.approx(0.10)
    assert prob.n_tiles == 4
    assert prob.n_tiles_by_label == {"stroma": 2, "necrosis": 1, "non_tumor": 0, "tumor": 2}
    assert prob.area_mm2_by_label["necrosis"] == pytest.approx(0.03 * 0.9)

    decision = compute_tsr(tiles, LABELS, weighting="decision")
    assert decision.stroma_area_mm2 == pytest.approx(0.03)  # tiles 0 and 1
    assert decision.tumor_area_mm2 == pytest.approx(0.05)  # tiles 1 and 2
    assert decision.stroma_fraction == pytest.approx(0.03 / 0.08)
    assert decision.tsr == pytest.approx(0.05 / 0.03)


def test_cut_off_is_strictly_above_half():
    equal = compute_tsr(table([{"stroma": 1.0}, {"tumor": 1.0}]))
    assert equal.stroma_fraction == pytest.approx(0.5) and equal.category == "stroma-low"
    high = compute_tsr(table([{"stroma": 1.0, "area": 0.011}, {"tumor": 1.0}]))
    assert high.category == "stroma-high"


def test_no_stroma_gives_infinite_tsr_and_json_safe_dict():
    result = compute_tsr(table([{"tumor": 0.9}, {"tumor": 0.8}]), LABELS, weighting="decision")
    assert result.stroma_fraction == 0.0
    assert math.isinf(result.tsr)
    assert result.category == "stroma-low"
    assert "no stroma" in result.note
    as_dict = result.to_dict()
    assert as_dict["tsr"] is None and as_dict["stroma_fraction"] == 0.0


def test_no_stroma_no_tumor_is_undetermined():
    result = compute_tsr(table([{"necrosis": 0.9}]))
    assert result.stroma_fraction is None and result.tsr is None
    assert result.category == "undetermined"
    empty = compute_tsr(table([]), LABELS)
    assert empty.n_tiles == 0 and empty.category == "undetermined"


def test_labels_inferred_and_custom_names():
    labels = ["tumour_epithelium", "desmoplasia", "fat"]
    tiles = table([{"desmoplasia": 0.8, "tumour_epithelium": 0.2}], labels=labels)
    result = compute_tsr(tiles, stroma_label="desmoplasia", tumor_label="tumour_epithelium")
    assert result.stroma_fraction == pytest.approx(0.8)
    assert set(result.n_tiles_by_label) == set(labels)


def test_clear_errors():
    tiles = table([{"stroma": 0.5}], labels=["stroma", "fat"])
    with pytest.raises(ValueError, match="TSR needs the label.*'tumor'"):
        compute_tsr(tiles)
    with pytest.raises(ValueError, match="missing column.*prob_tumor"):
        compute_tsr(tiles, ["stroma", "tumor"])
    with pytest.raises(ValueError, match="weighting must be one of"):
        compute_tsr(table([{"stroma": 0.5}]), weighting="area")


def test_tile_table_from_grids_follows_the_contract():
    stroma = np.array([[0.9, 0.2], [0.4, np.nan]])
    tissue = np.array([[1.0, 0.5], [0.0, 1.0]])
    tiles = tile_table_from_grids({"stroma": stroma, "tumor": 1 - stroma}, tile_size=224, mpp=0.5,
                                  tissue_fraction=tissue)
    assert list(tiles.columns) == tile_table_columns(["stroma", "tumor"])
    assert len(tiles) == 2  # no tissue at (1, 0), NaN at (1, 1)
    assert tiles["tissue_area_mm2"].tolist() == pytest.approx([0.112**2, 0.112**2 * 0.5])
    assert tiles["x"].tolist() == [0, 224] and tiles["pred_stroma"].tolist() == [1, 0]
