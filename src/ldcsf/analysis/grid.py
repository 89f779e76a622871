"""The tile table's regular grid: from row/col indices to level-0 pixels and back to arrays.

Both the hotspot search (convolutions over the grid) and the pictures (one pixel per grid cell)
work on 2-D arrays indexed by row/col rather than on per-tile loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TileGrid:
    """Where the grid lies in level-0 pixels, and each tile's (row, col) in array indices."""

    shape: tuple[int, int]  # (n_rows, n_cols) of the array, from the smallest row/col present
    row_offset: int  # table row index of array row 0
    col_offset: int
    origin_x: float  # level-0 x of the left edge of the tile at array column 0
    origin_y: float
    stride_x: float  # level-0 pixels from one grid column to the next
    stride_y: float
    tile_width: float
    tile_height: float
    rows: np.ndarray  # per tile (table order): array row index
    cols: np.ndarray

    @classmethod
    def from_tiles(cls, tiles: pd.DataFrame, *, what: str = "tile table") -> "TileGrid":
        if len(tiles) == 0:
            raise ValueError(f"{what}: no tiles")
        row = tiles["row"].to_numpy(dtype=np.int64)
        col = tiles["col"].to_numpy(dtype=np.int64)
        x = tiles["x"].to_numpy(dtype=float)
        y = tiles["y"].to_numpy(dtype=float)
        width = float(np.median(tiles["width"].to_numpy(dtype=float)))
        height = float(np.median(tiles["height"].to_numpy(dtype=float)))
        stride_x, origin_x = _fit_axis(col, x, width, f"{what}: x does not follow col on a regular grid")
        stride_y, origin_y = _fit_axis(row, y, height, f"{what}: y does not follow row on a regular grid")
        r0, c0 = int(row.min()), int(col.min())
        return cls(
            shape=(int(row.max()) - r0 + 1, int(col.max()) - c0 + 1),
            row_offset=r0,
            col_offset=c0,
            origin_x=origin_x + c0 * stride_x,
            origin_y=origin_y + r0 * stride_y,
            stride_x=stride_x,
            stride_y=stride_y,
            tile_width=width,
            tile_height=height,
            rows=row - r0,
            cols=col - c0,
        )

    def paint(self, values: np.ndarray, fill: float = np.nan, dtype=float) -> np.ndarray:
        """A (n_rows, n_cols) array with each tile's value at its cell; `fill` where no tile is."""
        grid = np.full(self.shape, fill, dtype=dtype)
        grid[self.rows, self.cols] = values
        return grid

    def cell_centre(self, row: int, col: int) -> tuple[float, float]:
        """Level-0 centre of the tile at array cell (row, col)."""
        return (
            self.origin_x + col * self.stride_x + self.tile_width / 2,
            self.origin_y + row * self.stride_y + self.tile_height / 2,
        )

    def own_cell_extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) in level-0 pixels of the whole array drawn cell by cell.

        Each tile owns the stride-sized cell around its centre, so overlapping tiles paint
        side by side rather than over each other (matplotlib imshow `extent` order).
        """
        left = self.origin_x + (self.tile_width - self.stride_x) / 2
        top = self.origin_y + (self.tile_height - self.stride_y) / 2
        return (left, left + self.shape[1] * self.stride_x, top + self.shape[0] * self.stride_y, top)


def _fit_axis(index: np.ndarray, position: np.ndarray, size: float, message: str) -> tuple[float, float]:
    """Stride and origin with position ≈ origin + index × stride (positions are rounded ints)."""
    if np.unique(index).size > 1:
        lo, hi = index.min(), index.max()
        stride = (np.median(position[index == hi]) - np.median(position[index == lo])) / (hi - lo)
    else:
        stride = size
    if stride <= 0:
        raise ValueError(f"{message} (stride {stride:g} px)")
    origin = float(np.median(position - index * stride))
    error = np.abs(position - (origin + index * stride)).max()
    if error > max(2.0, 0.01 * stride):
        raise ValueError(f"{message} (a tile is {error:.1f} px off)")
    return float(stride), origin
