"""Sub-tile area maps: from the area head's per-position output to table columns and pictures.

A model with an area head gives, per tile, a (labels, h, w) map of area fractions. With
overlapping tiles each tile owns only the stride-sized cell around its centre (as in the
pictures and the tissue areas), so only the map positions inside that cell are kept.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .grid import TileGrid


def own_cell_maps(maps: np.ndarray, tile_size: float, stride: float) -> np.ndarray:
    """The central part of each (N, L, h, w) map that covers the tile's own stride-sized cell."""
    h, w = maps.shape[-2:]
    keep = min(1.0, float(stride) / float(tile_size))
    kh, kw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = (h - kh) // 2, (w - kw) // 2
    return maps[..., top:top + kh, left:left + kw]


def add_area_columns(tiles: pd.DataFrame, maps: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """The tile table with area_<label> = mean area fraction over each tile's own-cell map."""
    if maps.shape[:2] != (len(tiles), len(labels)):
        raise ValueError(f"area maps of shape {maps.shape} do not match {len(tiles)} tiles x {len(labels)} labels")
    tiles = tiles.copy()
    means = maps.reshape(*maps.shape[:2], -1).mean(-1)
    for i, name in enumerate(labels):
        tiles[f"area_{name}"] = means[:, i].astype(np.float64)
    return tiles


def paint_subtile(grid: TileGrid, maps: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """A (rows*h, cols*w) array with each tile's (h, w) map at its cell (drawn with the grid's own-cell extent)."""
    n, h, w = maps.shape
    canvas = np.full((grid.shape[0] * h, grid.shape[1] * w), fill, dtype=float)
    rows = grid.rows[:, None, None] * h + np.arange(h)[None, :, None]
    cols = grid.cols[:, None, None] * w + np.arange(w)[None, None, :]
    canvas[rows, cols] = maps
    return canvas
