"""Pictures from the sub-tile area maps of a model with an area head.

Each tile is drawn as its (h, w) own-cell map instead of one colour, so boundaries between
tumour nests and stroma show inside a tile. Layout, legend and hotspot drawing are those of
`ldcsf.export.figures`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..analysis.areas import paint_subtile
from ..analysis.grid import TileGrid
from ..analysis.hotspot import Hotspot
from ..analysis.label_choice import MIN_DRAWN_AREA, dominant_area_index  # noqa: F401 - also imported from here
from .figures import label_overlay, plot_fraction_heatmap


def plot_subtile_overlay(
    thumbnail: Image.Image,
    thumbnail_downsample: float,
    tiles: pd.DataFrame,
    maps: np.ndarray,
    labels: Sequence[str],
    hotspot: Hotspot | None = None,
    *,
    title: str = "",
    alpha: float = 0.45,
) -> Image.Image:
    """Thumbnail with each sub-tile cell tinted by the label of largest estimated area."""
    index = None
    if len(tiles):
        grid = TileGrid.from_tiles(tiles)
        index = (grid, paint_subtile(grid, dominant_area_index(maps).astype(float), fill=-1).astype(int))
    return label_overlay(thumbnail, thumbnail_downsample, index, list(labels), hotspot, title=title, alpha=alpha,
                         legend_title=f"largest estimated area per sub-tile (cells under {MIN_DRAWN_AREA:.0%}: none)")


def plot_area_heatmap(
    thumbnail: Image.Image,
    thumbnail_downsample: float,
    tiles: pd.DataFrame,
    maps: np.ndarray,
    label: str,
    hotspot: Hotspot | None = None,
    *,
    title: str = "",
    cmap: str = "magma",
) -> Image.Image:
    """Estimated area fraction of `label` per sub-tile cell, over a faded thumbnail, with a colour bar."""
    return plot_fraction_heatmap(thumbnail, thumbnail_downsample, tiles, lambda grid: paint_subtile(grid, maps),
                                 f"estimated area fraction of {label}", hotspot, title=title, cmap=cmap)
