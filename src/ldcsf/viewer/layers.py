"""Map layers over the slide, drawn from the tile table, and the numbers of the tile under a point.

Each layer is one RGBA colour per grid cell (the class map, one probability heatmap per label,
and one area-fraction heatmap per label where the tile table has `area_<label>` columns). A layer
tile is cut from that small array by nearest-neighbour sampling at the Deep Zoom tile's pixel
centres, so cells stay sharp at every zoom and nothing larger than the grid is ever held.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..analysis.grid import TileGrid
from ..export.colors import hex_color, label_colors
from ..export.geojson import dominant_label_index

#: The heatmaps' colour map. The static pictures use magma over a greyscale copy of the slide; here the
#: heatmap lies on the H&E itself, where magma's middle (magenta) looks like eosin. Viridis runs from
#: dark blue through teal to yellow and stays apart from both stains.
HEATMAP_CMAP = "viridis"


@dataclass(frozen=True)
class Layer:
    key: str  # URL-safe name: "classes", "prob-<i>", "area-<i>"
    title: str
    kind: str  # "classes" or "heatmap"


class TileMaps:
    """The tile table of one slide as grid arrays: layer colours and point look-ups."""

    def __init__(self, tiles: pd.DataFrame, labels: Sequence[str], thresholds: Sequence[float] | None) -> None:
        self.labels = list(labels)
        self.tiles = tiles.reset_index(drop=True)
        self.grid = TileGrid.from_tiles(self.tiles) if len(self.tiles) else None
        self.area_labels = [n for n in self.labels if f"area_{n}" in self.tiles.columns]
        self._colors = label_colors(self.labels)
        self._thresholds = thresholds
        self._cells: dict[str, np.ndarray] = {}
        self.layers = [Layer("classes", "class map", "classes")]
        self.layers += [Layer(f"prob-{i}", f"probability of {n}", "heatmap") for i, n in enumerate(self.labels)]
        self.layers += [Layer(f"area-{self.labels.index(n)}", f"area fraction of {n}", "heatmap") for n in self.area_labels]
        self._by_key = {layer.key: layer for layer in self.layers}
        if self.grid is not None:
            self._index = self.grid.paint(np.arange(len(self.tiles)), fill=-1, dtype=np.int64)
            left, _, _, top = self.grid.own_cell_extent()
            self._left, self._top = left, top

    # -- description for the page --------------------------------------------------------------
    def describe(self) -> dict:
        grid = None
        if self.grid is not None:
            grid = {"left": self._left, "top": self._top, "stride_x": self.grid.stride_x, "stride_y": self.grid.stride_y,
                    "rows": self.grid.shape[0], "cols": self.grid.shape[1]}
        return {
            "layers": [{"key": l.key, "title": l.title, "kind": l.kind} for l in self.layers],
            "legend": [{"label": n, "color": hex_color(self._colors[n])} for n in self.labels],
            "heatmap_colors": [hex_color(c) for c in _heatmap_lut()[::32, :3]] + [hex_color(_heatmap_lut()[-1, :3])],
            "area_labels": self.area_labels,
            "grid": grid,
        }

    def has_layer(self, key: str) -> bool:
        return key in self._by_key

    # -- layer colours -------------------------------------------------------------------------
    def cell_colors(self, key: str) -> np.ndarray:
        """(rows, cols, 4) uint8 colours of a layer; alpha 0 where there is no tile."""
        if key not in self._cells:
            self._cells[key] = self._paint(key)
        return self._cells[key]

    def _paint(self, key: str) -> np.ndarray:
        if key == "classes":
            index = dominant_label_index(self.tiles, self.labels, self._thresholds)
            palette = np.array([[*self._colors[n], 255] for n in self.labels] + [[0, 0, 0, 0]], dtype=np.uint8)
            per_tile = palette[index]  # index -1 picks the transparent last row
        else:
            kind, i = key.split("-")
            values = self.tiles[f"{'prob' if kind == 'prob' else 'area'}_{self.labels[int(i)]}"].to_numpy(dtype=float)
            lut = _heatmap_lut()
            per_tile = lut[np.clip(np.nan_to_num(values, nan=0.0) * 255, 0, 255).astype(np.int64)]
            per_tile[~np.isfinite(values)] = 0
        cells = np.zeros((*self.grid.shape, 4), dtype=np.uint8)
        cells[self.grid.rows, self.grid.cols] = per_tile
        return cells

    def render(self, key: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> bytes | None:
        """PNG of layer `key` over the level-0 `box` (x, y, w, h) at `size`; None when it is empty."""
        if self.grid is None:
            return None
        x, y, w, h = box
        out_w, out_h = size
        cols = np.floor((x + (np.arange(out_w) + 0.5) * (w / out_w) - self._left) / self.grid.stride_x).astype(np.int64)
        rows = np.floor((y + (np.arange(out_h) + 0.5) * (h / out_h) - self._top) / self.grid.stride_y).astype(np.int64)
        col_ok = (cols >= 0) & (cols < self.grid.shape[1])
        row_ok = (rows >= 0) & (rows < self.grid.shape[0])
        if not col_ok.any() or not row_ok.any():
            return None
        cells = self.cell_colors(key)
        image = cells[np.clip(rows, 0, self.grid.shape[0] - 1)[:, None], np.clip(cols, 0, self.grid.shape[1] - 1)[None, :]]
        image[~row_ok, :] = 0
        image[:, ~col_ok] = 0
        if not image[..., 3].any():
            return None
        buffer = io.BytesIO()
        # compress level 1: cells are flat colour, so even fast deflate shrinks them well
        Image.fromarray(image, "RGBA").save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    # -- the tile under a point ----------------------------------------------------------------
    def tile_at(self, x: float, y: float) -> dict | None:
        """The numbers of the tile whose grid cell holds level-0 point (x, y), or None."""
        if self.grid is None:
            return None
        col = int(np.floor((x - self._left) / self.grid.stride_x))
        row = int(np.floor((y - self._top) / self.grid.stride_y))
        if not (0 <= row < self.grid.shape[0] and 0 <= col < self.grid.shape[1]):
            return None
        i = int(self._index[row, col])
        if i < 0:
            return None
        tile = self.tiles.iloc[i]
        return {
            "tile_id": int(tile["tile_id"]), "row": int(tile["row"]), "col": int(tile["col"]),
            "x": int(tile["x"]), "y": int(tile["y"]), "width": int(tile["width"]), "height": int(tile["height"]),
            "cell": {"x": self._left + col * self.grid.stride_x, "y": self._top + row * self.grid.stride_y,
                     "w": self.grid.stride_x, "h": self.grid.stride_y},
            "tissue_fraction": float(tile["tissue_fraction"]),
            "labels": [
                {
                    "label": n,
                    "prob": float(tile[f"prob_{n}"]),
                    "pred": int(tile[f"pred_{n}"]) if f"pred_{n}" in tile.index else None,
                    "area": float(tile[f"area_{n}"]) if n in self.area_labels else None,
                    "color": hex_color(self._colors[n]),
                }
                for n in self.labels
            ],
        }


_LUT: np.ndarray | None = None


def _heatmap_lut() -> np.ndarray:
    """(256, 4) uint8 colours of HEATMAP_CMAP, opaque."""
    global _LUT
    if _LUT is None:
        from matplotlib import colormaps

        _LUT = (colormaps[HEATMAP_CMAP](np.linspace(0, 1, 256)) * 255).round().astype(np.uint8)
    return _LUT
