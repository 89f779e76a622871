"""Hotspot search: known layouts, a layout with no qualifying field, and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ldcsf.analysis import find_hotspot
from ldcsf.analysis.hotspot import search_hotspot
from tile_grids import tile_table_from_grids

# 100 px tiles at 1 µm/px: a 500 µm field has radius 2.5 tiles and covers 21 tiles (5x5 minus
# the corners); its border ring is the 12 tiles around the central 3x3.
MPP, TILE, DIAMETER = 1.0, 100, 500.0


def layout(stroma_mask: np.ndarray, stride: int | None = None, tile: int = TILE):
    """Stroma tiles (stroma 0.9, tumour 0.1) where the mask is set, tumour tiles elsewhere."""
    stroma = np.where(stroma_mask, 0.9, 0.1)
    return tile_table_from_grids({"stroma": stroma, "necrosis": np.zeros(stroma.shape), "tumor": 1 - stroma},
                                 tile_size=tile, stride=stride, mpp=MPP)


def known_grid() -> np.ndarray:
    mask = np.zeros((12, 12), dtype=bool)
    mask[5:8, 6:9] = True  # 3x3 stroma block ringed by tumour: the field centred at (6, 7)
    mask[0:4, 0:4] = True  # more stroma, but at the slide's corner: no tumour to its north/west
    return mask


def test_most_stroma_rich_field_with_tumor_at_all_borders():
    tiles = layout(known_grid())
    hot = find_hotspot(tiles, MPP, field_diameter_um=DIAMETER)
    assert (hot.row, hot.col) == (6, 7)
    assert (hot.x, hot.y) == (750.0, 650.0)
    assert hot.radius_px == pytest.approx(250.0) and hot.diameter_um == DIAMETER
    assert hot.n_tiles == 21 and len(hot.tile_ids) == 21
    stroma, tumor = 9 * 0.9 + 12 * 0.1, 9 * 0.1 + 12 * 0.9
    area = (TILE * MPP / 1000) ** 2
    assert hot.stroma_area_mm2 == pytest.approx(stroma * area)
    assert hot.stroma_fraction == pytest.approx(stroma / 21)
    assert hot.tsr == pytest.approx(tumor / stroma)
    assert hot.category == "stroma-low"

    decision = find_hotspot(tiles, MPP, field_diameter_um=DIAMETER, weighting="decision")
    assert (decision.row, decision.col) == (6, 7)
    assert decision.stroma_fraction == pytest.approx(9 / 21)


def test_overlapping_tiles_give_the_same_field():
    # tiles twice the stride: same grid of centres, shifted by half a tile
    hot = find_hotspot(layout(known_grid(), stride=TILE, tile=2 * TILE), MPP, field_diameter_um=DIAMETER)
    assert (hot.row, hot.col) == (6, 7)
    assert (hot.x, hot.y) == (7 * TILE + TILE, 6 * TILE + TILE)


def test_no_field_qualifies_when_tumor_is_one_stripe():
    mask = np.ones((12, 12), dtype=bool)
    mask[6, :] = False  # tumour only along one row: never at north AND south of a field
    tiles = layout(mask)
    assert find_hotspot(tiles, MPP, field_diameter_um=DIAMETER) is None
    search = search_hotspot(tiles, MPP, field_diameter_um=DIAMETER)
    assert search.n_qualifying_fields == 0 and "four borders" in search.reason


def test_tumor_probability_rule_and_tissue_coverage():
    tiles = layout(known_grid())
    # with a border rule stricter than every tumour probability, nothing qualifies
    assert find_hotspot(tiles, MPP, field_diameter_um=DIAMETER, min_tumor_prob=0.95) is None
    # a field must be fully tissue: only centres at least 2 tiles from the edge remain
    hot = find_hotspot(tiles, MPP, field_diameter_um=DIAMETER, min_tissue_coverage=1.0)
    assert (hot.row, hot.col) == (6, 7)


def test_field_too_small_for_the_grid_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        find_hotspot(layout(known_grid()), MPP, field_diameter_um=150.0)
    with pytest.raises(ValueError, match="mpp"):
        find_hotspot(layout(known_grid()), 0.0)


def reference_search(stroma_area, tumor_area, present, radius_cells):
    """Loop over every centre and tile: the slow statement of the rule the search vectorises."""
    n_rows, n_cols = stroma_area.shape
    best = None
    for r in range(n_rows):
        for c in range(n_cols):
            inside = lambda rr, cc: (rr - r) ** 2 + (cc - c) ** 2 <= radius_cells**2 * (1 + 1e-9)
            stroma = tumor = 0.0
            seen = set()
            for rr in range(n_rows):
                for cc in range(n_cols):
                    if not inside(rr, cc):
                        continue
                    stroma += stroma_area[rr, cc]
                    tumor += tumor_area[rr, cc]
                    on_edge = any(not inside(rr + a, cc + b) for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1)))
                    if on_edge and present[rr, cc]:
                        dx, dy_up = cc - c, r - rr
                        if dy_up > 0 and dy_up >= abs(dx):
                            seen.add("N")
                        if dy_up < 0 and -dy_up >= abs(dx):
                            seen.add("S")
                        if dx > 0 and dx >= abs(dy_up):
                            seen.add("E")
                        if dx < 0 and -dx >= abs(dy_up):
                            seen.add("W")
            if len(seen) == 4 and stroma + tumor > 0:
                key = (round(stroma / (stroma + tumor), 9), stroma + tumor)
                if best is None or key > best[0]:  # strict: the first in reading order wins ties
                    best = (key, r, c)
    return best


def test_matches_a_loop_over_every_field_on_a_random_slide():
    rng = np.random.default_rng(7)
    shape = (14, 16)
    stroma = rng.random(shape)
    tissue = (rng.random(shape) > 0.1).astype(float)  # a few holes without tiles
    tiles = tile_table_from_grids({"stroma": stroma, "tumor": rng.random(shape)}, tile_size=TILE, mpp=MPP,
                                  tissue_fraction=tissue)
    hot = find_hotspot(tiles, MPP, field_diameter_um=700.0, min_tissue_coverage=0.0)
    area = (TILE * MPP / 1000) ** 2 * tissue
    present = np.zeros(shape, dtype=bool)
    present[tiles["row"], tiles["col"]] = tiles["pred_tumor"].to_numpy() == 1
    tumor = np.zeros(shape)
    tumor[tiles["row"], tiles["col"]] = tiles["prob_tumor"]
    key, r, c = reference_search(area * stroma, area * tumor, present, 3.5)
    assert (hot.row, hot.col) == (r, c)
    assert hot.stroma_fraction == pytest.approx(key[0], abs=1e-9)
    assert math.isfinite(hot.tsr)
