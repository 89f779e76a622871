"""Pictures of a slide's predictions: class map and per-label heatmaps over the thumbnail.

Tiles are painted as one array cell each (built from row/col, then stretched over the
thumbnail by imshow's `extent`), not as one patch per tile. Figures are plain
`matplotlib.figure.Figure` objects rendered by the Agg canvas, so nothing touches pyplot's
global state and no display is needed.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch
from PIL import Image

from ..analysis.grid import TileGrid
from ..analysis.hotspot import Hotspot
from ..analysis.label_choice import dominant_label_index
from .colors import HOTSPOT_CLASS, HOTSPOT_COLOR, hex_color, label_colors

#: Width of the saved pictures in pixels (figure inches × dpi).
FIGURE_WIDTH_PX = 1000
DPI = 100


def _figure_for(thumbnail: Image.Image, title: str) -> tuple[Figure, object]:
    """A ~1000 px wide figure with the thumbnail drawn on its only axes."""
    w, h = thumbnail.size
    width_in = FIGURE_WIDTH_PX / DPI
    height_in = min(max(width_in * 0.8 * h / w + 1.0, 3.0), 14.0)  # 0.8: room for legend/colour bar
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    # The saved picture is ~1000 px wide: shrinking the 2048 px thumbnail once with Pillow is much
    # cheaper than letting matplotlib resample the full array at every savefig. Axes coordinates
    # stay those of the full thumbnail (the extent), so overlays need no rescaling.
    ax.imshow(np.asarray(_display_copy(thumbnail)), extent=(0, w, h, 0), interpolation="antialiased")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=11)
    return fig, ax


def _display_copy(thumbnail: Image.Image) -> Image.Image:
    """The thumbnail as RGB, at most FIGURE_WIDTH_PX on its long side."""
    rgb = thumbnail.convert("RGB")
    if max(rgb.size) > FIGURE_WIDTH_PX:
        rgb.thumbnail((FIGURE_WIDTH_PX, FIGURE_WIDTH_PX), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return rgb


def _grid_extent(grid: TileGrid, downsample: float) -> tuple[float, float, float, float]:
    return tuple(v / downsample for v in grid.own_cell_extent())


def draw_hotspot(ax, hotspot: Hotspot | None, downsample: float) -> list:
    """Outline the hotspot field; return legend handles (none when there is no hotspot)."""
    if hotspot is None:
        return []
    color = hex_color(HOTSPOT_COLOR)
    centre = (hotspot.x / downsample, hotspot.y / downsample)
    # A dark rim under the coloured line keeps the circle visible over pale tissue and light overlays alike.
    ax.add_patch(Circle(centre, hotspot.radius_px / downsample, fill=False, edgecolor="black", linewidth=4.5))
    ax.add_patch(Circle(centre, hotspot.radius_px / downsample, fill=False, edgecolor=color, linewidth=2.5))
    ax.plot(*centre, marker="+", color=color, markersize=10, markeredgewidth=2)
    label = f"{HOTSPOT_CLASS} ({hotspot.diameter_um / 1000:g} mm): stroma {hotspot.stroma_fraction:.0%}"
    return [Line2D([], [], color=color, linewidth=2.5, label=label)]


def plot_class_overlay(
    thumbnail: Image.Image,
    thumbnail_downsample: float,
    tiles: pd.DataFrame,
    labels: Sequence[str],
    thresholds: Sequence[float] | None = None,
    hotspot: Hotspot | None = None,
    *,
    title: str = "",
    alpha: float = 0.45,
) -> Figure:
    """Thumbnail with each tile tinted by its most probable positive label, and a legend."""
    fig, ax = _figure_for(thumbnail, title)
    if len(tiles):
        grid = TileGrid.from_tiles(tiles)
        index = grid.paint(dominant_label_index(tiles, labels, thresholds), fill=-1, dtype=int)
        draw_label_index(ax, index, grid, thumbnail_downsample, labels, alpha)
    add_label_legend(fig, ax, labels, hotspot, thumbnail_downsample, "most probable\npositive label")
    return fig


def draw_label_index(ax, index: np.ndarray, grid: TileGrid, thumbnail_downsample: float,
                     labels: Sequence[str], alpha: float) -> None:
    """Tint each cell of a label-index array (-1: none) over the grid's own-cell extent."""
    colors = label_colors(list(labels))
    palette = np.array([[*(c / 255 for c in colors[n]), alpha] for n in labels] + [[0, 0, 0, 0]])
    ax.imshow(palette[index], extent=_grid_extent(grid, thumbnail_downsample), interpolation="nearest")


def add_label_legend(fig: Figure, ax, labels: Sequence[str], hotspot: Hotspot | None,
                     thumbnail_downsample: float, title: str) -> None:
    """The label colours and the hotspot (drawn here) as the figure's legend."""
    colors = label_colors(list(labels))
    handles = [Patch(facecolor=hex_color(colors[n]), alpha=0.8, label=n) for n in labels]
    handles += draw_hotspot(ax, hotspot, thumbnail_downsample)
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, title=title)


def plot_probability_heatmap(
    thumbnail: Image.Image,
    thumbnail_downsample: float,
    tiles: pd.DataFrame,
    label: str,
    hotspot: Hotspot | None = None,
    *,
    title: str = "",
    cmap: str = "magma",
) -> Figure:
    """Per-tile probability of `label` over a faded thumbnail, with a 0..1 colour bar."""
    return plot_fraction_heatmap(thumbnail, thumbnail_downsample, tiles,
                                 lambda grid: grid.paint(tiles[f"prob_{label}"].to_numpy(dtype=float)),
                                 f"probability of {label}", hotspot, title=title, cmap=cmap)


def plot_fraction_heatmap(thumbnail: Image.Image, thumbnail_downsample: float, tiles: pd.DataFrame, paint,
                          colorbar_label: str, hotspot: Hotspot | None = None, *, title: str = "",
                          cmap: str = "magma") -> Figure:
    """Values in 0..1 painted on the tiles' grid (`paint(grid)` -> 2-D array) over a faded thumbnail."""
    faded = Image.blend(thumbnail.convert("L").convert("RGB"), Image.new("RGB", thumbnail.size, "white"), 0.5)
    fig, ax = _figure_for(faded, title)
    values, extent = np.full((1, 1), np.nan), (0, 1, 1, 0)
    if len(tiles):
        grid = TileGrid.from_tiles(tiles)
        values = paint(grid)
        extent = _grid_extent(grid, thumbnail_downsample)
    image = ax.imshow(np.ma.masked_invalid(values), extent=extent, cmap=cmap, vmin=0.0, vmax=1.0,
                      alpha=0.85, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar_label)
    handles = draw_hotspot(ax, hotspot, thumbnail_downsample)
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=9, framealpha=0.8)
    return fig


def figure_to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (to write atomically and to embed in the report)."""
    buffer = io.BytesIO()
    # zlib level 3 instead of Pillow's 6: measured about half the encoding time for 4 % more bytes.
    fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 3})
    return buffer.getvalue()
