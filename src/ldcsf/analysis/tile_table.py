"""The tile table contract: which columns it has and how a label's area is read from it.

One row per tile: tile_id, row, col, x, y, width, height (level-0 pixels; row/col are grid
indices), tissue_fraction, tissue_area_mm2 (the tile's own grid-cell area times its tissue
fraction, so overlapping tiles are not counted twice), prob_<label> and pred_<label> per label.
Tables from a model with an area head also have area_<label>: the estimated fraction of the
tile's own cell covered by the label (from the sub-tile area map), the basis of "estimated_area" weighting.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

GEOMETRY_COLUMNS = ["tile_id", "row", "col", "x", "y", "width", "height"]
TISSUE_COLUMNS = ["tissue_fraction", "tissue_area_mm2"]
WEIGHTINGS = ("probability", "decision", "estimated_area")


def labels_from_columns(tiles: pd.DataFrame) -> list[str]:
    """The labels of a tile table, in column order, read from its prob_<label> columns."""
    return [str(c)[len("prob_"):] for c in tiles.columns if str(c).startswith("prob_")]


def tile_table_columns(labels: Sequence[str]) -> list[str]:
    """The columns of a tile table for `labels`, in the contract's order."""
    return GEOMETRY_COLUMNS + TISSUE_COLUMNS + [f"prob_{n}" for n in labels] + [f"pred_{n}" for n in labels]


def validate_tile_table(tiles: pd.DataFrame, labels: Sequence[str] | None = None, *, what: str = "tile table") -> list[str]:
    """Check the columns `labels` need (inferred from prob_* when None); return the labels.

    Raises ValueError naming `what` and the missing columns, so a bad table fails in one line.
    """
    if not isinstance(tiles, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(tiles).__name__}")
    labels = list(labels) if labels is not None else labels_from_columns(tiles)
    if not labels:
        raise ValueError(f"{what}: no labels given and no prob_<label> columns found")
    missing = [c for c in tile_table_columns(labels) if c not in tiles.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")
    if tiles[["row", "col"]].duplicated().any():
        dup = tiles.loc[tiles[["row", "col"]].duplicated(), ["row", "col"]].iloc[0].tolist()
        raise ValueError(f"{what}: more than one tile at grid position row={dup[0]}, col={dup[1]}")
    if tiles["tile_id"].duplicated().any():
        raise ValueError(f"{what}: tile_id values are not unique")
    return labels


def check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def has_areas(tiles: pd.DataFrame, labels: Sequence[str]) -> bool:
    """Whether the table has an area_<label> column for every label (a model with an area head)."""
    return all(f"area_{name}" in tiles.columns for name in labels)


def default_weighting(tiles: pd.DataFrame, labels: Sequence[str] | None = None) -> str:
    """"estimated_area" when the table has estimated areas (measured closer to pixel masks), else "probability"."""
    labels = list(labels) if labels is not None else labels_from_columns(tiles)
    return "estimated_area" if labels and has_areas(tiles, labels) else "probability"


def label_weights(tiles: pd.DataFrame, label: str, weighting: str) -> np.ndarray:
    """Per tile, how much of the label it holds: the probability, the 0/1 decision, or the area fraction."""
    check_weighting(weighting)
    column = {"probability": f"prob_{label}", "decision": f"pred_{label}", "estimated_area": f"area_{label}"}[weighting]
    if column not in tiles.columns:
        raise ValueError(f"weighting {weighting!r} needs the column {column} (tables from a model with an area head)")
    return tiles[column].to_numpy(dtype=float)


def label_area_mm2(tiles: pd.DataFrame, label: str, weighting: str) -> np.ndarray:
    """Per tile, the tissue area (mm²) attributed to `label` under `weighting`.

    A tile positive for several labels contributes to each of them: a multi-label tile holds
    stroma and tumour side by side, and neither should be dropped. Under "estimated_area" weighting the
    estimated fraction already excludes background, so it multiplies the tile's whole own cell
    (tissue area / tissue fraction) rather than its tissue area.
    """
    tissue = tiles["tissue_area_mm2"].to_numpy(dtype=float)
    if weighting == "estimated_area":
        fraction = tiles["tissue_fraction"].to_numpy(dtype=float)
        cell = np.divide(tissue, fraction, out=np.zeros_like(tissue), where=fraction > 0)
        return cell * label_weights(tiles, label, weighting)
    return tissue * label_weights(tiles, label, weighting)


def require_labels(labels: Sequence[str], *needed: str) -> None:
    """TSR needs a stroma and a tumour label: say clearly when the model has neither."""
    absent = [n for n in needed if n not in labels]
    if absent:
        raise ValueError(
            f"TSR needs the label(s) {', '.join(repr(n) for n in absent)} but the tile table has {list(labels)}; "
            "pass stroma_label=/tumor_label= to name them"
        )
