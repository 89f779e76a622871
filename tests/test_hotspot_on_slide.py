"""The hotspot field lies wholly on the slide: a field running past the edge is never chosen."""

from __future__ import annotations

import numpy as np

from ldcsf.analysis.hotspot import find_hotspot, search_hotspot
from tile_grids import tile_table_from_grids

# 100 px tiles at 1 µm/px; a 580 µm field has a radius of 290 px. The disc takes cells whose
# centres lie within the radius, so a field centred 250 px from the edge still has cells on its
# western border while its circle runs 40 px past the edge.
MPP, TILE, DIAMETER = 1.0, 100, 580.0


def tiles_from(stroma_mask: np.ndarray):
    stroma = np.where(stroma_mask, 0.9, 0.1)
    return tile_table_from_grids({"stroma": stroma, "necrosis": np.zeros(stroma.shape), "tumor": 1 - stroma},
                                 tile_size=TILE, mpp=MPP)


def test_a_field_past_the_left_edge_is_not_chosen():
    mask = np.zeros((10, 12), dtype=bool)
    mask[3:7, 0:3] = True  # stroma at the left edge, tumour around it
    tiles = tiles_from(mask)
    dimensions = (12 * TILE, 10 * TILE)

    unconstrained = find_hotspot(tiles, MPP, field_diameter_um=DIAMETER)
    assert unconstrained.x - unconstrained.radius_px < 0  # what was chosen before: past the edge
    on_slide = find_hotspot(tiles, MPP, field_diameter_um=DIAMETER, dimensions=dimensions)
    radius = on_slide.radius_px
    assert on_slide.x - radius >= 0 and on_slide.x + radius <= dimensions[0]
    assert on_slide.y - radius >= 0 and on_slide.y + radius <= dimensions[1]
    assert (on_slide.x, on_slide.y) == (350.0, 450.0)  # the richest field that fits


def test_no_field_fits_a_slide_narrower_than_the_field():
    tiles = tiles_from(np.zeros((4, 12), dtype=bool))  # 400 px tall: a 500 px field cannot fit
    search = search_hotspot(tiles, MPP, field_diameter_um=DIAMETER, dimensions=(1200, 400))
    assert search.hotspot is None and "wholly on the slide" in search.reason
