"""Tile tables from hand-made probability grids, for tests of the analysis and the writers."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ldcsf.analysis.tile_table import tile_table_columns


def tile_table_from_grids(
    probabilities: dict[str, np.ndarray],
    *,
    tile_size: int,
    mpp: float,
    stride: int | None = None,
    tissue_fraction: np.ndarray | None = None,
    thresholds: Sequence[float] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> pd.DataFrame:
    """Build a tile table from per-label probability maps on a (rows, cols) grid.

    Cells whose tissue fraction is 0 (or NaN probability) are left out, as a tiler leaves out
    background.

    Args:
        probabilities: label -> (rows, cols) array of probabilities, all the same shape.
        tile_size: tile width and height in level-0 pixels; `stride` (default: tile_size) is the
            step between tiles, smaller for overlapping tiles.
        mpp: µm per level-0 pixel, for tissue_area_mm2.
        tissue_fraction: (rows, cols) fraction of tissue per tile; 1 everywhere when None.
        thresholds: per label, pred = prob >= threshold; 0.5 each when None.
    """
    labels = list(probabilities)
    stride = stride or tile_size
    shape = np.asarray(probabilities[labels[0]]).shape
    tissue = np.ones(shape) if tissue_fraction is None else np.asarray(tissue_fraction, dtype=float)
    thresholds = [0.5] * len(labels) if thresholds is None else list(thresholds)
    keep = tissue > 0
    for name in labels:
        keep &= np.isfinite(np.asarray(probabilities[name], dtype=float))
    rows, cols = np.nonzero(keep)
    cell_area_mm2 = (stride * mpp / 1000) ** 2
    table = {
        "tile_id": np.arange(rows.size, dtype=np.int64),
        "row": rows.astype(np.int64),
        "col": cols.astype(np.int64),
        "x": (origin[0] + cols * stride).astype(np.int64),
        "y": (origin[1] + rows * stride).astype(np.int64),
        "width": np.full(rows.size, tile_size, dtype=np.int64),
        "height": np.full(rows.size, tile_size, dtype=np.int64),
        "tissue_fraction": tissue[rows, cols],
        "tissue_area_mm2": cell_area_mm2 * tissue[rows, cols],
    }
    for name in labels:
        table[f"prob_{name}"] = np.asarray(probabilities[name], dtype=float)[rows, cols]
    for name, threshold in zip(labels, thresholds):
        table[f"pred_{name}"] = (table[f"prob_{name}"] >= threshold).astype(np.int64)
    return pd.DataFrame(table, columns=tile_table_columns(labels))
