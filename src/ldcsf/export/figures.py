"""Pictures of a slide's predictions: class map and per-label heatmaps over the thumbnail.

Every picture is composed from arrays already in memory with Pillow: the thumbnail shrunk once,
the tile grid painted as one array cell per tile (or per sub-tile cell) and stretched over its
place with nearest-neighbour resampling, the hotspot drawn as a circle, and a legend or colour bar
beside the map. Drawing the same pictures as matplotlib figures took ~1.3 s per slide (layout and
resampling, twice per saved figure), a quarter of a small slide's whole run; composed here they
take a few hundredths of a second. Only the colour map's table is read from matplotlib
(`matplotlib.colormaps`, without its figure machinery).

The plot_* functions return a PIL image; `figure_to_png` encodes it.
"""

from __future__ import annotations

import importlib.util
import io
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ..analysis.grid import TileGrid
from ..analysis.hotspot import Hotspot
from ..analysis.label_choice import dominant_label_index
from .colors import HOTSPOT_CLASS, HOTSPOT_COLOR, label_colors

#: Width of the saved pictures in pixels.
FIGURE_WIDTH_PX = 1000
#: Width of the legend or colour-bar panel on the right, and the margins around the map.
PANEL_PX, MARGIN_PX = 190, 10
#: Tallest map drawn (a very tall slide gets a narrower map).
MAX_MAP_HEIGHT_PX = 1300
TITLE_FONT_PX, TEXT_FONT_PX = 15, 13


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (the font matplotlib ships, found without importing it), else Pillow's own."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


#: matplotlib's colour maps that slide pictures use, as (256, 3) uint8 tables: importing matplotlib
#: and its colour map data costs about 0.15 s of each slide's start-up. Other names ask matplotlib.
STORED_COLORMAPS = Path(__file__).with_name("colormaps.npz")


def matplotlib_colormap_table(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colour map, sampled as the stored tables are."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


@lru_cache(maxsize=None)
def _colormap_table(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colour map (stored for the maps slide pictures use)."""
    with np.load(STORED_COLORMAPS) as stored:
        if name in stored.files:
            return stored[name]
    return matplotlib_colormap_table(name)


def _display_copy(thumbnail: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The thumbnail as RGB at `size` (shrunk once, with a high-quality filter)."""
    rgb = thumbnail.convert("RGB")
    return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _map_size(thumbnail: Image.Image) -> tuple[int, int]:
    """Pixels of the map: as wide as the picture leaves room for, no taller than MAX_MAP_HEIGHT_PX."""
    w, h = thumbnail.size
    width = FIGURE_WIDTH_PX - PANEL_PX - 2 * MARGIN_PX
    height = width * h / w
    if height > MAX_MAP_HEIGHT_PX:
        width, height = width * MAX_MAP_HEIGHT_PX / height, MAX_MAP_HEIGHT_PX
    return max(1, round(width)), max(1, round(height))


class Picture:
    """A picture being composed: title on top, the map (thumbnail coordinates scaled) on the left,
    a panel on the right."""

    def __init__(self, thumbnail: Image.Image, title: str) -> None:
        self.map_size = _map_size(thumbnail)
        self.scale = self.map_size[0] / thumbnail.size[0]  # picture px per thumbnail px
        self.title_height = TITLE_FONT_PX + 2 * MARGIN_PX if title else MARGIN_PX
        height = self.title_height + self.map_size[1] + MARGIN_PX
        self.image = Image.new("RGB", (FIGURE_WIDTH_PX, max(height, 300)), "white")
        self.origin = (MARGIN_PX, self.title_height)
        self.map = _display_copy(thumbnail, self.map_size).convert("RGBA")
        self.draw_title(title)

    def draw_title(self, title: str) -> None:
        if title:
            draw = ImageDraw.Draw(self.image)
            draw.text((FIGURE_WIDTH_PX / 2, MARGIN_PX), title, fill="black", font=_font(TITLE_FONT_PX), anchor="mt")

    def paint_cells(self, cells: np.ndarray, extent: tuple[float, float, float, float]) -> None:
        """Lay an RGBA (rows, cols, 4) uint8 cell array over the map, stretched over `extent`
        ((left, right, bottom, top) in thumbnail pixels: `TileGrid.own_cell_extent` / downsample)."""
        left, right, bottom, top = (v * self.scale for v in extent)
        box = (round(left), round(top), round(right), round(bottom))
        size = (max(1, box[2] - box[0]), max(1, box[3] - box[1]))
        layer = Image.new("RGBA", self.map.size, (0, 0, 0, 0))
        layer.paste(Image.fromarray(cells, "RGBA").resize(size, Image.Resampling.NEAREST), box[:2])
        self.map = Image.alpha_composite(self.map, layer)

    def draw_hotspot(self, hotspot: Hotspot | None, downsample: float) -> str | None:
        """Outline the hotspot field on the map; its legend text (None without a hotspot)."""
        if hotspot is None:
            return None
        x, y = (hotspot.x / downsample * self.scale, hotspot.y / downsample * self.scale)
        r = hotspot.radius_px / downsample * self.scale
        draw = ImageDraw.Draw(self.map)
        # A dark rim under the coloured line keeps the circle visible over pale tissue and light overlays alike.
        draw.ellipse((x - r, y - r, x + r, y + r), outline="black", width=5)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=HOTSPOT_COLOR, width=3)
        draw.line((x - 7, y, x + 7, y), fill=HOTSPOT_COLOR, width=2)
        draw.line((x, y - 7, x, y + 7), fill=HOTSPOT_COLOR, width=2)
        return f"{HOTSPOT_CLASS} ({hotspot.diameter_um / 1000:g} mm): stroma {hotspot.stroma_fraction:.0%}"

    @property
    def panel_left(self) -> int:
        return MARGIN_PX + self.map_size[0] + MARGIN_PX

    def finish(self) -> Image.Image:
        self.image.paste(self.map.convert("RGB"), self.origin)
        return self.image


def _wrapped(text: str, width_px: int, font) -> list[str]:
    """`text` broken into lines no wider than `width_px` (at spaces; its own line breaks kept)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}".strip()
            if line and font.getlength(trial) > width_px:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _legend(picture: Picture, title: str, entries: Sequence[tuple[tuple[int, int, int], str]],
            hotspot_text: str | None) -> None:
    """Colour squares with their names (and the hotspot's line) in the right panel, under `title`."""
    draw = ImageDraw.Draw(picture.image)
    font, line_h = _font(TEXT_FONT_PX), TEXT_FONT_PX + 6
    x, y = picture.panel_left, picture.title_height
    for line in _wrapped(title, PANEL_PX - MARGIN_PX, font):
        draw.text((x, y), line, fill="black", font=font)
        y += line_h
    y += 4
    for colour, name in entries:
        # The legend's swatch at the overlay's 0.8 opacity over white, as a viewer sees the tint.
        swatch = tuple(round(0.8 * c + 0.2 * 255) for c in colour)
        draw.rectangle((x, y + 1, x + 22, y + TEXT_FONT_PX), fill=swatch, outline="grey")
        draw.text((x + 30, y), name, fill="black", font=font)
        y += line_h
    if hotspot_text:
        draw.line((x, y + TEXT_FONT_PX // 2, x + 22, y + TEXT_FONT_PX // 2), fill=HOTSPOT_COLOR, width=3)
        for line in _wrapped(hotspot_text, PANEL_PX - MARGIN_PX - 30, font):
            draw.text((x + 30, y), line, fill="black", font=font)
            y += line_h


def _colour_bar(picture: Picture, cmap: str, label: str) -> None:
    """A vertical 0..1 colour bar with ticks every 0.2 and its label, in the right panel."""
    draw = ImageDraw.Draw(picture.image)
    font = _font(TEXT_FONT_PX)
    x, top = picture.panel_left + 10, picture.title_height + 20
    height = max(100, round(picture.map_size[1] * 0.8))
    ramp = _colormap_table(cmap)[np.linspace(255, 0, height).round().astype(int)]  # 1 at the top
    bar = Image.fromarray(np.repeat(ramp[:, None, :], 24, axis=1), "RGB")
    picture.image.paste(bar, (x, top))
    draw.rectangle((x, top, x + 23, top + height - 1), outline="black")
    for tick in np.linspace(0.0, 1.0, 6):
        y = top + round((1.0 - tick) * (height - 1))
        draw.line((x + 24, y, x + 28, y), fill="black")
        draw.text((x + 32, y), f"{tick:.1f}", fill="black", font=font, anchor="lm")
    text = Image.new("RGBA", (round(font.getlength(label)) + 4, TEXT_FONT_PX + 6), (255, 255, 255, 0))
    ImageDraw.Draw(text).text((2, 0), label, fill="black", font=font)
    text = text.rotate(90, expand=True)
    picture.image.paste(text, (x + 70, top + max(0, (height - text.size[1]) // 2)), text)


def _hotspot_note(picture: Picture, text: str | None) -> None:
    """The hotspot's line in a small box at the map's lower left (heatmaps, whose panel holds the colour bar)."""
    if not text:
        return
    draw = ImageDraw.Draw(picture.map)
    font = _font(TEXT_FONT_PX)
    width = round(font.getlength(text)) + 44
    y = picture.map_size[1] - TEXT_FONT_PX - 16
    draw.rectangle((6, y, 6 + width, y + TEXT_FONT_PX + 10), fill=(255, 255, 255, 205), outline="grey")
    draw.line((12, y + 5 + TEXT_FONT_PX // 2, 34, y + 5 + TEXT_FONT_PX // 2), fill=HOTSPOT_COLOR, width=3)
    draw.text((40, y + 4), text, fill="black", font=font)


def _grid_extent(grid: TileGrid, downsample: float) -> tuple[float, float, float, float]:
    return tuple(v / downsample for v in grid.own_cell_extent())


def label_index_cells(index: np.ndarray, labels: Sequence[str], alpha: float) -> np.ndarray:
    """RGBA cells of a label-index array (-1: none, transparent), each label in its colour."""
    colors = label_colors(list(labels))
    palette = np.array([[*colors[n], round(alpha * 255)] for n in labels] + [[0, 0, 0, 0]], dtype=np.uint8)
    return palette[index]


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
) -> Image.Image:
    """Thumbnail with each tile tinted by its most probable positive label, and a legend."""
    index = None
    if len(tiles):
        grid = TileGrid.from_tiles(tiles)
        index = (grid, grid.paint(dominant_label_index(tiles, labels, thresholds), fill=-1, dtype=int))
    return label_overlay(thumbnail, thumbnail_downsample, index, labels, hotspot, title=title, alpha=alpha,
                         legend_title="most probable\npositive label")


def label_overlay(thumbnail: Image.Image, thumbnail_downsample: float, index: tuple[TileGrid, np.ndarray] | None,
                  labels: Sequence[str], hotspot: Hotspot | None, *, title: str, alpha: float,
                  legend_title: str) -> Image.Image:
    """The overlay picture of a label-index array on a grid (None: no tiles), with its legend."""
    picture = Picture(thumbnail, title)
    if index is not None:
        grid, cells = index
        picture.paint_cells(label_index_cells(cells, labels, alpha), _grid_extent(grid, thumbnail_downsample))
    hotspot_text = picture.draw_hotspot(hotspot, thumbnail_downsample)
    colors = label_colors(list(labels))
    _legend(picture, legend_title, [(tuple(colors[n]), n) for n in labels], hotspot_text)
    return picture.finish()


def plot_probability_heatmap(
    thumbnail: Image.Image,
    thumbnail_downsample: float,
    tiles: pd.DataFrame,
    label: str,
    hotspot: Hotspot | None = None,
    *,
    title: str = "",
    cmap: str = "magma",
) -> Image.Image:
    """Per-tile probability of `label` over a faded thumbnail, with a 0..1 colour bar."""
    return plot_fraction_heatmap(thumbnail, thumbnail_downsample, tiles,
                                 lambda grid: grid.paint(tiles[f"prob_{label}"].to_numpy(dtype=float)),
                                 f"probability of {label}", hotspot, title=title, cmap=cmap)


def plot_fraction_heatmap(thumbnail: Image.Image, thumbnail_downsample: float, tiles: pd.DataFrame,
                          paint: Callable[[TileGrid], np.ndarray], colorbar_label: str,
                          hotspot: Hotspot | None = None, *, title: str = "", cmap: str = "magma") -> Image.Image:
    """Values in 0..1 painted on the tiles' grid (`paint(grid)` -> 2-D array, NaN: no tile) over a
    faded thumbnail, with a colour bar."""
    faded = Image.blend(thumbnail.convert("L").convert("RGB"), Image.new("RGB", thumbnail.size, "white"), 0.5)
    picture = Picture(faded, title)
    if len(tiles):
        grid = TileGrid.from_tiles(tiles)
        values = np.asarray(paint(grid), dtype=float)
        known = np.isfinite(values)
        codes = (np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).round().astype(int)
        cells = np.zeros((*values.shape, 4), dtype=np.uint8)
        cells[..., :3] = _colormap_table(cmap)[codes]
        cells[..., 3] = np.where(known, round(0.85 * 255), 0)
        picture.paint_cells(cells, _grid_extent(grid, thumbnail_downsample))
    _hotspot_note(picture, picture.draw_hotspot(hotspot, thumbnail_downsample))
    _colour_bar(picture, cmap, colorbar_label)
    return picture.finish()


def figure_to_png(picture: Image.Image) -> bytes:
    """Encode a picture as PNG bytes (to write atomically and to embed in the report)."""
    buffer = io.BytesIO()
    # zlib level 3 instead of Pillow's 6: measured about half the encoding time for 4 % more bytes.
    picture.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
