"""From real labelled tiles to a trained checkpoint to `ldcsf slide` on a real Aperio slide.

The checkpoint is trained in the test (a few epochs of the micro model on real NCT-CRC tiles), so
the whole chain runs for real: training, the checkpoint format, slide reading through OpenSlide,
tissue detection, tiling, prediction, TSR, and every output file.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.checkpoint import load_checkpoint
from ldcsf.cli.main import main
from ldcsf.training import TrainConfig, train

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


@pytest.fixture(scope="module")
def trained_checkpoint(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    frame = source[source["path"].str.startswith("nct_crc/")][["path", *LABELS]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = np.where(np.arange(len(frame)) % 4 == 3, "val", "train")
    frame.to_csv(tmp / "manifest.csv", index=False)
    config = TrainConfig(
        data=str(tmp / "manifest.csv"), model="ldcsf_swin_micro", out=str(tmp / "run"), epochs=3,
        batch_size=16, lr=1e-3, warmup_epochs=0.5, patience=0, num_workers=0, accelerator="cpu",
        devices=1, progress=False,
    )
    return train(config).model_file


def test_trained_checkpoint_runs_on_the_real_slide(shared_data, trained_checkpoint, tmp_path, capsys):
    meta = load_checkpoint(trained_checkpoint).meta
    assert meta.labels == LABELS and meta.input_size == 64
    # 224 px tiles at 0.5 µm/px resized to the 64 px input: each input pixel covers 1.75 µm.
    assert meta.mpp == pytest.approx(1.75)

    out = tmp_path / "out"
    slide = shared_data / "slides" / "CMU-1-Small-Region.svs"
    code = main(["slide", str(slide), "--checkpoint", str(trained_checkpoint), "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    slide_dir = out / "CMU-1-Small-Region"

    tiles = pd.read_parquet(slide_dir / "tiles.parquet")
    tiles_csv = pd.read_csv(slide_dir / "tiles.csv")
    summary = json.loads((slide_dir / "tsr.json").read_text())
    geojson = json.loads((slide_dir / "tiles.geojson").read_text())
    cohort = pd.read_csv(out / "cohort.csv")

    # One tile count across every output.
    n = len(tiles)
    assert n > 20
    tile_features = [f for f in geojson["features"] if f["properties"]["objectType"] != "annotation"]
    assert len(tiles_csv) == len(tile_features) == n
    assert cohort.loc[0, "n_tiles"] == n and cohort.loc[0, "status"] == "ok"
    # Tiles are 1.75 µm/px x 64 px = 112 µm wide: 224 level-0 px at the slide's 0.499 µm/px.
    assert (tiles["width"] == round(64 * 1.75 / 0.499)).all()

    # GeoJSON as QuPath reads it: closed polygons inside the slide, classification and measurements.
    width, height = 2220, 2967
    for feature in tile_features:
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]
        xs, ys = zip(*ring)
        assert 0 <= min(xs) and max(xs) <= width and 0 <= min(ys) and max(ys) <= height
        assert set(feature["properties"]["measurements"]) >= {f"prob_{label}" for label in LABELS}

    # TSR numbers agree with the tile table they were computed from (probability weighting).
    stroma = (tiles["tissue_area_mm2"] * tiles["prob_stroma"]).sum()
    tumor = (tiles["tissue_area_mm2"] * tiles["prob_tumor"]).sum()
    fraction = summary["tsr"]["stroma_fraction"]
    assert summary["tsr"]["n_tiles"] == n
    assert fraction == pytest.approx(stroma / (stroma + tumor), rel=1e-6)
    assert cohort.loc[0, "stroma_fraction"] == pytest.approx(fraction, rel=1e-6)

    for png in ["overlay.png", *[f"heatmap_{label}.png" for label in LABELS]]:
        with Image.open(slide_dir / png) as picture:
            picture.load()
            assert min(picture.size) > 200, png
    report = (slide_dir / "report.html").read_text()
    assert "data:image/png;base64," in report and "CMU-1-Small-Region" in report
