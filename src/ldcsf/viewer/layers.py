"""Map layers over the slide, drawn from the tile table, and the numbers of the tile under a point.

Each layer is one RGBA colour per grid cell (the class map, one probability heatmap per label,
and one area-fraction heatmap per label where the tile table has `area_<label>` columns). A layer
tile is cut from that small array by nearest-neighbour sampling at the Deep Zoom tile's pixel
centres, so cells stay sharp at every zoom and nothing larger than the grid is ever held.

Where the slide folder has `subtile_maps.npz` (a model with an area head: per tile an (h, w) map of
area fractions over its own grid cell), the area heatmaps are drawn per sub-cell instead, on a
(rows*h, cols*w) array, and one more layer, "class map (sub-tile)", colours each sub-cell by its
label of largest area fraction (as overlay.png does). The hover numbers stay per tile.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..analysis.areas import paint_subtile
from ..analysis.grid import TileGrid
from ..analysis.label_choice import MIN_DRAWN_AREA, area_labels, dominant_area_index, dominant_label_index
from ..export.colors import hex_color, label_colors

#: The heatmaps' colour map. The static pictures use magma over a greyscale copy of the slide; here the
#: heatmap lies on the H&E itself, where magma's middle (magenta) looks like eosin. Viridis runs from
#: dark blue through teal to yellow and stays apart from both stains.
HEATMAP_CMAP = "viridis"


@dataclass(frozen=True)
class Layer:
    key: str  # URL-safe name: "classes", "classes-subtile", "prob-<i>", "area-<i>"
    title: str
    kind: str  # "classes" or "heatmap"


class TileMaps:
    """The tile table of one slide as grid arrays: layer colours and point look-ups."""

    def __init__(self, tiles: pd.DataFrame, labels: Sequence[str], thresholds: Sequence[float] | None,
                 subtile: "SubtileMaps | None" = None) -> None:
        self.labels = list(labels)
        self.tiles = tiles.reset_index(drop=True)
        self.grid = TileGrid.from_tiles(self.tiles) if len(self.tiles) else None
        self.area_labels = area_labels(self.tiles, self.labels)
        self._colors = label_colors(self.labels)
        self._thresholds = thresholds
        self._cells: dict[str, np.ndarray] = {}
        # (tiles, labels, h, w) area maps in table order and self.labels order; NaN where a tile has none
        self._subtile = subtile.align(self.tiles, self.labels) if subtile is not None and self.grid is not None else None
        self.layers = [Layer("classes", "class map", "classes")]
        if self._subtile is not None:
            self.layers.append(Layer("classes-subtile", "class map (sub-tile)", "classes"))
        self.layers += [Layer(f"prob-{i}", f"probability of {n}", "heatmap") for i, n in enumerate(self.labels)]
        suffix = " (sub-tile)" if self._subtile is not None else ""
        self.layers += [Layer(f"area-{self.labels.index(n)}", f"area fraction of {n}{suffix}", "heatmap")
                        for n in self.area_labels]
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
            "subtile": None if self._subtile is None else list(self._subtile.shape[-2:]),
            "grid": grid,
        }

    def has_layer(self, key: str) -> bool:
        return key in self._by_key

    # -- layer colours -------------------------------------------------------------------------
    def cell_colors(self, key: str) -> np.ndarray:
        """(rows, cols, 4) uint8 colours of a layer, (rows*h, cols*w, 4) for a sub-tile one; alpha 0 where there is no tile."""
        if key not in self._cells:
            self._cells[key] = self._paint(key)
        return self._cells[key]

    def _paint(self, key: str) -> np.ndarray:
        if self._subtile is not None and (key == "classes-subtile" or key.startswith("area-")):
            return self._paint_subtile(key)
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

    def _paint_subtile(self, key: str) -> np.ndarray:
        maps = self._subtile
        if key == "classes-subtile":
            finite = np.isfinite(maps).all(axis=(1, 2, 3))
            index = dominant_area_index(np.nan_to_num(maps, nan=0.0), MIN_DRAWN_AREA)
            index[~finite] = -1
            canvas = paint_subtile(self.grid, index.astype(float), fill=-1).astype(np.int64)
            palette = np.array([[*self._colors[n], 255] for n in self.labels] + [[0, 0, 0, 0]], dtype=np.uint8)
            return palette[canvas]  # -1 picks the transparent last row
        values = paint_subtile(self.grid, maps[:, int(key.split("-")[1])])
        cells = _heatmap_lut()[np.clip(np.nan_to_num(values, nan=0.0) * 255, 0, 255).astype(np.int64)]
        cells[~np.isfinite(values)] = 0
        return cells

    def render(self, key: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> bytes | None:
        """PNG of layer `key` over the level-0 `box` (x, y, w, h) at `size`; None when it is empty."""
        if self.grid is None:
            return None
        x, y, w, h = box
        out_w, out_h = size
        n_rows, n_cols = self.grid.shape
        # a sub-tile layer has h x w cells per grid cell: its array is that many times larger
        sub_h, sub_w = (self._subtile.shape[-2:] if self._subtile is not None and
                        (key == "classes-subtile" or key.startswith("area-")) else (1, 1))
        step_x, step_y = self.grid.stride_x / sub_w, self.grid.stride_y / sub_h
        cols = np.floor((x + (np.arange(out_w) + 0.5) * (w / out_w) - self._left) / step_x).astype(np.int64)
        rows = np.floor((y + (np.arange(out_h) + 0.5) * (h / out_h) - self._top) / step_y).astype(np.int64)
        col_ok = (cols >= 0) & (cols < n_cols * sub_w)
        row_ok = (rows >= 0) & (rows < n_rows * sub_h)
        if not col_ok.any() or not row_ok.any():
            return None
        cells = self.cell_colors(key)
        image = cells[np.clip(rows, 0, cells.shape[0] - 1)[:, None], np.clip(cols, 0, cells.shape[1] - 1)[None, :]]
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


@dataclass(frozen=True)
class SubtileMaps:
    """The contents of a slide folder's subtile_maps.npz: per tile_id, a (labels, h, w) map of area fractions."""

    tile_id: np.ndarray  # (N,)
    labels: list[str]
    maps: np.ndarray  # (N, L, h, w) float16

    @classmethod
    def read(cls, folder) -> "SubtileMaps | None":
        """The folder's subtile_maps.npz, or None when it has none; ValueError when it is not one."""
        from pathlib import Path

        from ..export.slide_outputs import SUBTILE_MAPS

        path = Path(folder) / SUBTILE_MAPS
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                tile_id, labels, maps = saved["tile_id"], saved["labels"], saved["maps"]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a sub-tile map file ({err})") from None
        if maps.ndim != 4 or maps.shape[:2] != (len(tile_id), len(labels)):
            raise ValueError(f"{path}: maps of shape {maps.shape} for {len(tile_id)} tiles x {len(labels)} labels")
        return cls(tile_id=np.asarray(tile_id, dtype=np.int64), labels=[str(n) for n in labels], maps=maps)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.maps.shape

    def align(self, tiles: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
        """(len(tiles), len(labels), h, w) float32 maps in table and label order; NaN for tiles or labels not saved."""
        n, _, h, w = self.maps.shape
        out = np.full((len(tiles), len(labels), h, w), np.nan, dtype=np.float32)
        where = {int(t): i for i, t in enumerate(self.tile_id)}
        src = np.array([where.get(int(t), -1) for t in tiles["tile_id"].to_numpy()], dtype=np.int64)
        have = src >= 0
        for j, name in enumerate(labels):
            if name in self.labels:
                out[have, j] = self.maps[src[have], self.labels.index(name)]
        return out


_LUT: np.ndarray | None = None


def _heatmap_lut() -> np.ndarray:
    """(256, 4) uint8 colours of HEATMAP_CMAP, opaque."""
    global _LUT
    if _LUT is None:
        from matplotlib import colormaps

        _LUT = (colormaps[HEATMAP_CMAP](np.linspace(0, 1, 256)) * 255).round().astype(np.uint8)
    return _LUT
