"""Tile predictions and the TSR hotspot as GeoJSON that QuPath imports.

QuPath (File > Import objects from file, or drag and drop onto the image) reads a
FeatureCollection whose features carry, in `properties`:
- "objectType": "tile" for each tile (a detection QuPath draws filled by class colour) and
  "annotation" for the hotspot;
- "classification": {"name": ..., "color": [r, g, b]};
- "measurements": a JSON object {name: number}. This is the form QuPath 0.4+ writes; it still
  reads the older list of {"name", "value"} pairs, which we do not use.
Feature "id"s are UUIDs because QuPath 0.4+ takes a feature id as the object's UUID (and
ignores ids that are not UUIDs). Coordinates are level-0 pixels, origin top-left.
Exterior rings are closed and counter-clockwise by the shoelace sign of the written numbers
(RFC 7946's right-hand rule; on screen, with y pointing down, they look clockwise).
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..analysis.hotspot import Hotspot
from ..analysis.label_choice import dominant_label_index, positive_labels  # noqa: F401 - also imported from here
from ..utils.atomic import write_text_atomic
from .colors import HOTSPOT_CLASS, HOTSPOT_COLOR, label_colors

_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/ldcsf/ldcsf/geojson")
#: Vertices of the polygon standing in for the hotspot circle (GeoJSON has no circle).
CIRCLE_VERTICES = 96


def _feature_id(slide_id: str, kind: str, key) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{slide_id}/{kind}/{key}"))


def _clip(value: float, upper: float | None) -> float:
    return min(max(value, 0), upper) if upper is not None else value


def _number(value) -> float | int | None:
    """A JSON-safe number (NaN and infinity are not JSON: dropped)."""
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def rectangle_ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """Closed counter-clockwise (shoelace-positive) ring of a rectangle."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def circle_ring(x: float, y: float, radius: float, dimensions: tuple[int, int] | None = None,
                n: int = CIRCLE_VERTICES) -> list[list[float]]:
    """Closed counter-clockwise polygon approximating a circle, clamped to the slide."""
    width, height = dimensions if dimensions is not None else (None, None)
    ring = [
        [round(_clip(x + radius * math.cos(t), width), 2), round(_clip(y + radius * math.sin(t), height), 2)]
        for t in np.linspace(0, 2 * math.pi, n, endpoint=False)
    ]
    return ring + [ring[0]]


def tiles_to_geojson(
    tiles: pd.DataFrame,
    labels: Sequence[str],
    thresholds: Sequence[float] | None = None,
    hotspot: Hotspot | None = None,
    *,
    slide_id: str = "",
    dimensions: tuple[int, int] | None = None,
    object_type: str = "tile",
) -> dict:
    """A GeoJSON FeatureCollection: one feature per tile (same order), then the hotspot.

    Each tile is classified by its most probable positive label; tiles with no positive label
    are left unclassified. `dimensions` (level-0 width, height) clamps polygons to the slide.
    """
    labels = list(labels)
    if thresholds is not None and len(thresholds) != len(labels):
        raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels {labels}")
    colors = label_colors(labels)
    width, height = dimensions if dimensions is not None else (None, None)
    dominant = dominant_label_index(tiles, labels, thresholds)
    measurement_columns = [f"prob_{n}" for n in labels] + [f"pred_{n}" for n in labels if f"pred_{n}" in tiles.columns]
    measurement_columns += ["tissue_fraction", "tissue_area_mm2", "row", "col"]
    values = tiles[measurement_columns].to_numpy(dtype=float)
    geometry = tiles[["tile_id", "x", "y", "width", "height"]].to_numpy()

    features = []
    for (tile_id, x, y, w, h), label_index, row in zip(geometry, dominant, values):
        x0, y0 = _clip(x, width), _clip(y, height)
        x1, y1 = _clip(x + w, width), _clip(y + h, height)
        properties: dict = {"objectType": object_type}
        if label_index >= 0:
            name = labels[label_index]
            properties["classification"] = {"name": name, "color": list(colors[name])}
        properties["measurements"] = {
            k: v for k, v in zip(measurement_columns, (_number(float(v)) for v in row)) if v is not None
        }
        features.append({
            "type": "Feature",
            "id": _feature_id(slide_id, "tile", tile_id),
            "geometry": {"type": "Polygon", "coordinates": [rectangle_ring(_number(x0), _number(y0), _number(x1), _number(y1))]},
            "properties": properties,
        })
    if hotspot is not None:
        features.append(hotspot_feature(hotspot, slide_id=slide_id, dimensions=dimensions))
    return {"type": "FeatureCollection", "features": features}


def hotspot_feature(hotspot: Hotspot, *, slide_id: str = "", dimensions: tuple[int, int] | None = None) -> dict:
    """The hotspot circle as a locked QuPath annotation with its numbers as measurements."""
    measurements = {
        "stroma_fraction": hotspot.stroma_fraction,
        "tsr": hotspot.tsr,
        "diameter_um": hotspot.diameter_um,
        "stroma_area_mm2": hotspot.stroma_area_mm2,
        "tumor_area_mm2": hotspot.tumor_area_mm2,
        "n_tiles": hotspot.n_tiles,
    }
    return {
        "type": "Feature",
        "id": _feature_id(slide_id, "hotspot", 0),
        "geometry": {"type": "Polygon", "coordinates": [circle_ring(hotspot.x, hotspot.y, hotspot.radius_px, dimensions)]},
        "properties": {
            "objectType": "annotation",
            "name": f"{HOTSPOT_CLASS}: stroma {hotspot.stroma_fraction:.0%} ({hotspot.category})",
            "classification": {"name": HOTSPOT_CLASS, "color": list(HOTSPOT_COLOR)},
            "isLocked": True,
            "measurements": {k: v for k, v in ((k, _number(v)) for k, v in measurements.items()) if v is not None},
        },
    }


def write_geojson(path: str | Path, collection: dict) -> Path:
    """Write a FeatureCollection compactly (whole slides have tens of thousands of tiles)."""
    path = Path(path)
    write_text_atomic(path, json.dumps(collection, separators=(",", ":"), allow_nan=False) + "\n")
    return path
