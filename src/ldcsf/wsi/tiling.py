"""A grid of tiles at the model's physical resolution, kept where there is tissue.

A checkpoint says its input is `input_size` px at `mpp` µm/px; on a slide scanned at `slide_mpp`
that is a square of `input_size * mpp / slide_mpp` level-0 pixels. Tiles step by a stride
(smaller than the tile when they overlap); each tile "owns" one stride cell, so summing
`tissue_area_mm2` over tiles never counts an area twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..options import MIN_TISSUE
from .slide_reader import level0_pixels
from .tissue import TissueMask

#: Tile table columns the grid fills, in the order of the tile table contract.
GRID_COLUMNS = ["tile_id", "row", "col", "x", "y", "width", "height", "tissue_fraction", "tissue_area_mm2"]
DEFAULT_MIN_TISSUE = MIN_TISSUE


@dataclass(frozen=True)
class TileSpec:
    """Tile and stride sizes in level-0 pixels for one slide."""

    tile_size: int
    stride: int
    slide_mpp: float

    @classmethod
    def for_model(cls, input_size: int, model_mpp: float, slide_mpp: float, overlap: float = 0.0) -> "TileSpec":
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap is a fraction of the tile in [0, 1), got {overlap}")
        tile = level0_pixels(input_size, model_mpp, slide_mpp)  # the readers' `level0_extent` rule
        stride = max(1, round(tile * (1.0 - overlap)))
        return cls(tile_size=tile, stride=stride, slide_mpp=slide_mpp)

    @property
    def cell_area_mm2(self) -> float:
        """Area a tile owns (its stride cell) in mm²."""
        return self.stride * self.stride * self.slide_mpp**2 / 1e6


def grid_shape(dimensions: tuple[int, int], spec: TileSpec) -> tuple[int, int]:
    """(rows, cols) of a grid whose last row/column reaches the slide's edge."""
    width, height = dimensions

    def count(length: int) -> int:
        return max(1, math.ceil(max(length - spec.tile_size, 0) / spec.stride) + 1)

    return count(height), count(width)


def tile_grid(
    dimensions: tuple[int, int],
    spec: TileSpec,
    tissue: TissueMask | None = None,
    min_tissue: float = DEFAULT_MIN_TISSUE,
) -> pd.DataFrame:
    """The tile table's geometry: one row per tile with at least `min_tissue` tissue.

    Without a tissue mask every grid tile is kept with tissue_fraction 1.
    """
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue is a fraction in [0, 1], got {min_tissue}")
    rows, cols = grid_shape(dimensions, spec)
    row, col = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
    x, y = col * spec.stride, row * spec.stride
    size = np.full_like(x, spec.tile_size)
    fraction = np.ones(len(x)) if tissue is None else tissue.tissue_fractions(x, y, size, size)
    keep = fraction >= max(min_tissue, 1e-9)  # a tile with no tissue at all is never kept
    table = pd.DataFrame(
        {
            "row": row[keep],
            "col": col[keep],
            "x": x[keep],
            "y": y[keep],
            "width": size[keep],
            "height": size[keep],
            "tissue_fraction": fraction[keep].astype(np.float64),
        }
    )
    table.insert(0, "tile_id", np.arange(len(table), dtype=np.int64))
    table["tissue_area_mm2"] = spec.cell_area_mm2 * table["tissue_fraction"]
    return table[GRID_COLUMNS].reset_index(drop=True)
