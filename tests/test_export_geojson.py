"""QuPath GeoJSON: structure QuPath 0.4+ reads, consistent with the tile table."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pandas as pd
import pytest

from ldcsf.analysis import find_hotspot
from tile_grids import tile_table_from_grids
from ldcsf.export.colors import HOTSPOT_CLASS, label_colors
from ldcsf.export.geojson import tiles_to_geojson, write_geojson

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]
DIMENSIONS = (1150, 1180)  # narrower than the 12x12 grid of 100 px tiles: the last tiles are clipped


def signed_area(ring) -> float:
    """Shoelace area: positive for a counter-clockwise ring (x right, y up)."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]))


@pytest.fixture(scope="module")
def slide():
    rng = np.random.default_rng(3)
    stroma = np.where(np.add.outer(np.arange(12), np.arange(12)) % 5 == 0, 0.9, 0.15)
    probs = {"stroma": stroma, "necrosis": rng.random((12, 12)) * 0.4, "non_tumor": rng.random((12, 12)) * 0.4,
             "tumor": 1 - stroma}
    tiles = tile_table_from_grids(probs, tile_size=100, mpp=1.0)
    # tile 0: stroma and tumour both positive, tumour more probable; tile 1: nothing positive
    tiles.loc[0, ["prob_stroma", "prob_tumor", "pred_stroma", "pred_tumor"]] = [0.6, 0.8, 1, 1]
    tiles.loc[1, [f"prob_{n}" for n in LABELS]] = 0.1
    tiles.loc[1, [f"pred_{n}" for n in LABELS]] = 0
    hotspot = find_hotspot(tiles, 1.0, field_diameter_um=500.0)
    assert hotspot is not None
    collection = tiles_to_geojson(tiles, LABELS, [0.5] * 4, hotspot, slide_id="s1", dimensions=DIMENSIONS)
    return tiles, hotspot, collection


def test_one_feature_per_tile_plus_the_hotspot(slide, tmp_path):
    tiles, hotspot, collection = slide
    path = write_geojson(tmp_path / "tiles.geojson", collection)
    loaded = json.loads(path.read_text())  # what QuPath parses: strict JSON, no NaN
    assert loaded["type"] == "FeatureCollection"
    features = loaded["features"]
    assert len(features) == len(tiles) + 1
    assert [f["properties"]["objectType"] for f in features] == ["tile"] * len(tiles) + ["annotation"]
    ids = [f["id"] for f in features]
    assert len(set(ids)) == len(ids)
    assert all(str(uuid.UUID(i)) == i for i in ids)  # QuPath 0.4+ takes ids as UUIDs


def test_polygons_closed_counter_clockwise_and_inside_the_slide(slide):
    _, _, collection = slide
    width, height = DIMENSIONS
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        assert len(ring) >= 4 and ring[0] == ring[-1]
        assert signed_area(ring) > 0
        xs, ys = np.array(ring).T
        assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= width and ys.max() <= height


def test_tile_properties_match_the_table(slide):
    tiles, _, collection = slide
    colors = label_colors(LABELS)
    for feature, (_, tile) in zip(collection["features"], tiles.iterrows()):
        (ring,) = feature["geometry"]["coordinates"]
        assert ring[0] == [tile["x"], tile["y"]]
        props = feature["properties"]
        measurements = props["measurements"]
        assert isinstance(measurements, dict)  # the QuPath 0.4+ form
        for name in LABELS:
            assert measurements[f"prob_{name}"] == pytest.approx(tile[f"prob_{name}"])
        assert measurements["tissue_fraction"] == pytest.approx(tile["tissue_fraction"])
        positives = [n for n in LABELS if tile[f"pred_{n}"] == 1]
        if positives:
            expected = max(positives, key=lambda n: tile[f"prob_{n}"])
            assert props["classification"] == {"name": expected, "color": list(colors[expected])}
        else:
            assert "classification" not in props
    assert collection["features"][0]["properties"]["classification"]["name"] == "tumor"
    assert "classification" not in collection["features"][1]["properties"]


def test_hotspot_annotation_approximates_the_circle(slide):
    _, hotspot, collection = slide
    feature = collection["features"][-1]
    props = feature["properties"]
    assert props["classification"]["name"] == HOTSPOT_CLASS
    assert props["measurements"]["stroma_fraction"] == pytest.approx(hotspot.stroma_fraction)
    (ring,) = feature["geometry"]["coordinates"]
    distances = [math.hypot(x - hotspot.x, y - hotspot.y) for x, y in ring]
    width, height = DIMENSIONS
    unclipped = [d for (x, y), d in zip(ring, distances) if 0 < x < width and 0 < y < height]
    assert unclipped and max(abs(d - hotspot.radius_px) for d in unclipped) < 0.1


def test_tiles_without_pred_columns_use_thresholds():
    tiles = tile_table_from_grids({"stroma": np.array([[0.7, 0.2]]), "tumor": np.array([[0.6, 0.4]])},
                                  tile_size=10, mpp=1.0)
    tiles = tiles.drop(columns=["pred_stroma", "pred_tumor"])
    collection = tiles_to_geojson(tiles, ["stroma", "tumor"], [0.8, 0.3])
    names = [f["properties"].get("classification", {}).get("name") for f in collection["features"]]
    assert names == ["tumor", "tumor"]
    with pytest.raises(ValueError, match="2 thresholds"):
        tiles_to_geojson(tiles, ["stroma", "tumor", "fat"], [0.5, 0.5])
