"""The TSR hotspot: the most stroma-rich microscope field with tumour at all four borders.

This follows the visual scoring protocol (van Pelt et al. 2018): at a 10x objective, choose
the most stroma-rich area in which tumour cells are present at every border of the field
(north, east, south and west), and score the stroma percentage there.

How it is computed on a tile grid:
- The field is a circle of `field_diameter_um` (default 2.2 mm: field number 22 mm / 10x).
- Candidate centres are the grid cells; a tile belongs to a field when its CENTRE lies inside
  the circle (no partial weighting by overlap, so every number is a sum over whole tiles).
- The field's border tiles are the tiles of the disc with a 4-neighbour outside it (the
  outermost ring, about one tile wide), split into four sectors by direction from the centre;
  a diagonal tile counts for both sectors it touches. A field qualifies when each sector has
  at least one tumour tile and at least `min_tissue_coverage` of the disc's cells is tissue.
- Given the slide's size, a field qualifies only when the whole circle lies on the slide: a
  field running past the edge would have the edge, not tumour, as part of its border.
- Stroma fraction of a field = stroma area / (stroma + tumour area) of its tiles, with the same
  weighting as the slide-level TSR.
All fields are scored at once by correlating the grid with disc and sector kernels: directly
(exact sums) on the grids of ordinary slides, by FFT convolution where grid × kernel is large, so
the cost does not grow with field size × tile count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from ..labels import STROMA_LABEL, TUMOR_LABEL
from .grid import TileGrid
from .tile_table import check_weighting, label_area_mm2, require_labels, validate_tile_table
from .tsr import finite_or_none, ratio_and_category

#: Diameter of a 10x objective field: eyepiece field number 22 mm divided by 10x = 2.2 mm.
DEFAULT_FIELD_DIAMETER_UM = 2200.0
#: A field must be at least this fraction tissue (by its grid cells), so a field that is mostly
#: background with a few tumour tiles at the rim cannot win.
DEFAULT_MIN_TISSUE_COVERAGE = 0.5
DIRECTIONS = ("north", "east", "south", "west")


@dataclass
class Hotspot:
    """The chosen field: centre in level-0 pixels, its size and its numbers."""

    x: float
    y: float
    row: int  # grid row/col of the centre tile, as in the tile table
    col: int
    diameter_um: float
    radius_px: float
    stroma_fraction: float
    tsr: float | None
    category: str
    stroma_area_mm2: float
    tumor_area_mm2: float
    tissue_area_mm2: float
    n_tiles: int
    weighting: str
    n_qualifying_fields: int
    tile_ids: list = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["tsr"] = finite_or_none(self.tsr)
        return out


@dataclass
class HotspotSearch:
    """The outcome of a search: the hotspot or None, and in words why none qualified."""

    hotspot: Hotspot | None
    n_candidate_fields: int
    n_qualifying_fields: int
    reason: str


def field_kernels(radius_px: float, stride_x: float, stride_y: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Boolean disc of grid cells whose centres lie within `radius_px`, and its border sectors."""
    half_c = int(math.floor(radius_px / stride_x))
    half_r = int(math.floor(radius_px / stride_y))
    dr, dc = np.mgrid[-half_r : half_r + 1, -half_c : half_c + 1]
    dx, dy_up = dc * stride_x, -dr * stride_y  # y grows downwards in the image: north is -row
    disc = dx**2 + dy_up**2 <= radius_px**2 * (1 + 1e-9)
    inner = ndimage.binary_erosion(disc, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    edge = disc & ~inner
    sectors = {
        "north": edge & (dy_up > 0) & (dy_up >= np.abs(dx)),
        "east": edge & (dx > 0) & (dx >= np.abs(dy_up)),
        "south": edge & (dy_up < 0) & (-dy_up >= np.abs(dx)),
        "west": edge & (dx < 0) & (-dx >= np.abs(dy_up)),
    }
    return disc, sectors


#: grid cells x kernel cells above which the sums go through the FFT: direct sums of 4e7 products
#: take ~0.03 s; below it, `scipy.signal` (0.4 s to import, a tenth of a small slide's run) is not loaded.
FFT_ABOVE = 40_000_000


def _correlate(grid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of `grid` under `kernel` centred on every cell (zeros outside the grid); kernels have odd sides."""
    if not grid.any():
        return np.zeros_like(grid, dtype=float)
    if grid.size * kernel.size <= FFT_ABOVE:
        return ndimage.correlate(grid.astype(float), kernel.astype(float), mode="constant", cval=0.0)
    from scipy.signal import fftconvolve

    # correlation = convolution with the flipped kernel; FFT keeps big fields on big slides cheap
    return fftconvolve(grid, kernel[::-1, ::-1].astype(float), mode="same")


def tumor_present(tiles: pd.DataFrame, tumor_label: str, min_tumor_prob: float | None) -> np.ndarray:
    """Which tiles show tumour for the border rule: pred == 1, or prob >= min_tumor_prob."""
    if min_tumor_prob is None:
        return tiles[f"pred_{tumor_label}"].to_numpy() == 1
    return tiles[f"prob_{tumor_label}"].to_numpy(dtype=float) >= min_tumor_prob


def search_hotspot(
    tiles: pd.DataFrame,
    mpp: float,
    *,
    field_diameter_um: float = DEFAULT_FIELD_DIAMETER_UM,
    stroma_label: str = STROMA_LABEL,
    tumor_label: str = TUMOR_LABEL,
    weighting: str = "probability",
    min_tumor_prob: float | None = None,
    min_tissue_coverage: float = DEFAULT_MIN_TISSUE_COVERAGE,
    dimensions: tuple[int, int] | None = None,
) -> HotspotSearch:
    """Score every field on the grid; see `find_hotspot` for the arguments.

    `dimensions` (level-0 width, height): when given, only fields wholly on the slide qualify.
    """
    check_weighting(weighting)
    labels = validate_tile_table(tiles)
    require_labels(labels, stroma_label, tumor_label)
    if not (mpp > 0 and math.isfinite(mpp)):
        raise ValueError(f"mpp must be a positive number of µm per level-0 pixel, got {mpp}")
    if not field_diameter_um > 0:
        raise ValueError(f"field_diameter_um must be positive, got {field_diameter_um}")
    if len(tiles) == 0:
        return HotspotSearch(None, 0, 0, "the slide has no tissue tiles")

    grid = TileGrid.from_tiles(tiles)
    radius_px = field_diameter_um / 2 / mpp
    disc, sectors = field_kernels(radius_px, grid.stride_x, grid.stride_y)
    empty = [name for name in DIRECTIONS if not sectors[name].any()]
    if empty:
        tile_um = max(grid.stride_x, grid.stride_y) * mpp
        raise ValueError(
            f"field diameter {field_diameter_um:g} µm is too small for tiles every {tile_um:.0f} µm: "
            "the field needs at least 3 tiles across"
        )

    stroma = grid.paint(label_area_mm2(tiles, stroma_label, weighting), fill=0.0)
    tumor = grid.paint(label_area_mm2(tiles, tumor_label, weighting), fill=0.0)
    tissue = grid.paint(tiles["tissue_area_mm2"].to_numpy(dtype=float), fill=0.0)
    present = grid.paint(tumor_present(tiles, tumor_label, min_tumor_prob).astype(float), fill=0.0)

    field_stroma = np.clip(_correlate(stroma, disc), 0, None)
    field_tumor = np.clip(_correlate(tumor, disc), 0, None)
    cell_area_mm2 = grid.stride_x * grid.stride_y * mpp**2 / 1e6
    coverage = _correlate(tissue, disc) / (disc.sum() * cell_area_mm2)
    field_total = field_stroma + field_tumor
    # FFT sums (large grids) carry ~1e-16 relative noise: compare against a tolerance, not exact zero
    eps = 1e-9 * max(float(field_total.max()), 1e-12)
    qualifies = (field_total > eps) & (coverage >= min_tissue_coverage - 1e-9)
    for name in DIRECTIONS:
        qualifies &= _correlate(present, sectors[name]) > 0.5
    if dimensions is not None:
        qualifies &= _field_on_slide(grid, radius_px, dimensions)

    n_candidates, n_qualifying = int(np.prod(grid.shape)), int(qualifies.sum())
    if n_qualifying == 0:
        reason = (
            f"no {field_diameter_um / 1000:g} mm field has tumour at all four borders "
            f"and at least {min_tissue_coverage:.0%} tissue"
            + (" while lying wholly on the slide" if dimensions is not None else "")
        )
        return HotspotSearch(None, n_candidates, 0, reason)

    fraction = np.where(qualifies, field_stroma / np.maximum(field_total, eps), -1.0)
    rows, cols = np.nonzero(qualifies)
    # most stroma-rich first; ties: more scored tissue, then the first in reading order
    order = np.lexsort((cols, rows, -field_total[rows, cols], -np.round(fraction[rows, cols], 9)))
    best_row, best_col = int(rows[order[0]]), int(cols[order[0]])
    hotspot = _hotspot_at(
        tiles, grid, best_row, best_col, radius_px, field_diameter_um,
        stroma_label=stroma_label, tumor_label=tumor_label, weighting=weighting, n_qualifying=n_qualifying,
    )
    return HotspotSearch(hotspot, n_candidates, n_qualifying, "")


def _field_on_slide(grid: TileGrid, radius_px: float, dimensions: tuple[int, int]) -> np.ndarray:
    """Per grid cell: does a circle of `radius_px` around the cell's centre lie inside the slide?"""
    width, height = dimensions
    xs = grid.origin_x + np.arange(grid.shape[1]) * grid.stride_x + grid.tile_width / 2
    ys = grid.origin_y + np.arange(grid.shape[0]) * grid.stride_y + grid.tile_height / 2
    slack = 1e-6 * radius_px
    fits_x = (xs - radius_px >= -slack) & (xs + radius_px <= width + slack)
    fits_y = (ys - radius_px >= -slack) & (ys + radius_px <= height + slack)
    return fits_y[:, None] & fits_x[None, :]


def _hotspot_at(tiles, grid: TileGrid, row: int, col: int, radius_px: float, diameter_um: float, *,
                stroma_label: str, tumor_label: str, weighting: str, n_qualifying: int) -> Hotspot:
    """Exact numbers of the field centred on array cell (row, col), summed over its tiles."""
    dx = (grid.cols - col) * grid.stride_x
    dy = (grid.rows - row) * grid.stride_y
    inside = dx**2 + dy**2 <= radius_px**2 * (1 + 1e-9)
    covered = tiles[inside]
    stroma = float(label_area_mm2(covered, stroma_label, weighting).sum())
    tumor = float(label_area_mm2(covered, tumor_label, weighting).sum())
    fraction, tsr, category, _ = ratio_and_category(stroma, tumor)
    x, y = grid.cell_centre(row, col)
    return Hotspot(
        x=float(x), y=float(y),
        row=row + grid.row_offset, col=col + grid.col_offset,
        diameter_um=float(diameter_um), radius_px=float(radius_px),
        stroma_fraction=float(fraction), tsr=tsr, category=category,
        stroma_area_mm2=stroma, tumor_area_mm2=tumor,
        tissue_area_mm2=float(covered["tissue_area_mm2"].sum()),
        n_tiles=int(len(covered)), weighting=weighting, n_qualifying_fields=n_qualifying,
        tile_ids=covered["tile_id"].tolist(),
    )


def find_hotspot(
    tiles: pd.DataFrame,
    mpp: float,
    *,
    field_diameter_um: float = DEFAULT_FIELD_DIAMETER_UM,
    stroma_label: str = STROMA_LABEL,
    tumor_label: str = TUMOR_LABEL,
    weighting: str = "probability",
    min_tumor_prob: float | None = None,
    min_tissue_coverage: float = DEFAULT_MIN_TISSUE_COVERAGE,
    dimensions: tuple[int, int] | None = None,
) -> Hotspot | None:
    """The most stroma-rich circular field with tumour at its N/E/S/W borders, or None.

    Args:
        tiles: the tile table.
        mpp: µm per level-0 pixel of the slide.
        field_diameter_um: the field's diameter (default 2200 µm, a 10x objective field).
        stroma_label, tumor_label: which labels are stroma and tumour.
        weighting: "probability" or "decision", as in `compute_tsr`.
        min_tumor_prob: a border tile shows tumour when prob_<tumour> >= this; None (default)
            uses the thresholded decision pred_<tumour> == 1.
        min_tissue_coverage: least fraction of the field's grid cells that must be tissue.
        dimensions: the slide's level-0 (width, height); only fields wholly on the slide qualify.
    Returns None when no field qualifies; `search_hotspot` also says why.
    """
    return search_hotspot(
        tiles, mpp, field_diameter_um=field_diameter_um, stroma_label=stroma_label, tumor_label=tumor_label,
        weighting=weighting, min_tumor_prob=min_tumor_prob, min_tissue_coverage=min_tissue_coverage,
        dimensions=dimensions,
    ).hotspot
