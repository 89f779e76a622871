"""Which label a tile or sub-tile cell is shown as, and which labels the pictures and the viewer offer.

One set of rules, read by the figures, the GeoJSON and the viewer alike, so a tile has the same
label in overlay.png, in QuPath and on the viewer's class map.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: A sub-tile cell is coloured only where its largest label area reaches this fraction: below
#: it the cell is mostly background or of no confident label, and stays uncoloured.
MIN_DRAWN_AREA = 0.25


def positive_labels(tiles: pd.DataFrame, labels: Sequence[str], thresholds: Sequence[float] | None) -> np.ndarray:
    """(n_tiles, n_labels) booleans: pred_<label> == 1, or prob >= threshold where pred is absent."""
    columns = []
    for i, name in enumerate(labels):
        if f"pred_{name}" in tiles.columns:
            columns.append(tiles[f"pred_{name}"].to_numpy() == 1)
        elif thresholds is not None:
            columns.append(tiles[f"prob_{name}"].to_numpy(dtype=float) >= thresholds[i])
        else:
            raise ValueError(f"tile table: no pred_{name} column and no thresholds to derive it")
    return np.stack(columns, axis=1) if columns else np.zeros((len(tiles), 0), dtype=bool)


def dominant_label_index(tiles: pd.DataFrame, labels: Sequence[str], thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Per tile, the index of its most probable positive label, or -1 when none is positive."""
    if len(tiles) == 0:
        return np.zeros(0, dtype=int)
    probs = tiles[[f"prob_{n}" for n in labels]].to_numpy(dtype=float)
    positive = positive_labels(tiles, labels, thresholds)
    best = np.argmax(np.where(positive, probs, -np.inf), axis=1)
    return np.where(positive.any(axis=1), best, -1)


def dominant_area_index(maps: np.ndarray, min_area: float = MIN_DRAWN_AREA) -> np.ndarray:
    """(N, h, w) index of the label with the largest area per cell; -1 where it is below `min_area`."""
    index = maps.argmax(axis=1)
    return np.where(maps.max(axis=1) >= min_area, index, -1)


def area_labels(tiles: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    """The labels whose estimated area the tile table holds (`area_<label>`: a model with an area head)."""
    return [name for name in labels if f"area_{name}" in tiles.columns]
