"""What a slide costs before its first tile: the shortcuts give the same outputs as the long way.

* A small slide is read in-process without timing the reader/model split first; its tile
  table and TSR equal those of a run with a reader process.
* Pen ink is looked for only among saturated pixels; the mask equals the full-image one.
* `--no-pictures` leaves out the PNGs and nothing else.
* `benchmarks/fixed_cost.py` breaks a run down into its steps.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.wholeslide.core_split import MIN_TILES_TO_MEASURE
from ldcsf.wsi import open_slide
from ldcsf.wsi.pen_marks import (BLUE_HUE, BLUE_MAX_VALUE, BLUE_MIN_SATURATION, GREEN_HUE, GREEN_MIN_SATURATION,
                                 hue_degrees, pen_ink_mask)
from ldcsf.wsi.tissue import saturation_value

CMU = "slides/CMU-1-Small-Region.svs"


def full_image_ink(rgb: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The ink mask as it was computed before: hue of every pixel."""
    hue = hue_degrees(rgb)
    green = (hue >= GREEN_HUE[0]) & (hue < GREEN_HUE[1]) & (saturation > GREEN_MIN_SATURATION)
    blue = (hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (saturation > BLUE_MIN_SATURATION) & (value < BLUE_MAX_VALUE)
    return green | blue


def test_ink_mask_equals_the_full_image_one(shared_data):
    with open_slide(shared_data / CMU) as slide:
        thumb, _ = slide.thumbnail(1024)
    rgb = np.array(thumb.convert("RGB"))
    # Green and blue strokes over tissue and glass, light and dark, so every rule of the mask is met.
    rgb[100:140, :, :] = (40, 160, 90)
    rgb[300:330, :, :] = (30, 40, 150)
    rgb[500:520, :, :] = (150, 170, 230)  # pale blue: glass, not ink
    saturation, value = saturation_value(rgb)
    expected = full_image_ink(rgb, saturation, value)
    got = pen_ink_mask(rgb, saturation, value)
    assert expected.sum() > 50_000  # the strokes are found
    np.testing.assert_array_equal(got, expected)
    blank = np.full((64, 64, 3), 240, np.uint8)  # no saturated pixel at all
    assert not pen_ink_mask(blank, *saturation_value(blank)).any()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A micro model whose 64 px input covers 80 µm (1.25 µm/px): ~100 tiles on the CMU slide."""
    model = create_model("ldcsf_swin_micro")
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    return save_checkpoint(path, model, CheckpointMeta.for_model(model, thresholds=[0.5, 0.4, 0.6, 0.5], mpp=1.25))


def test_small_slide_skips_the_split_measurement_with_identical_outputs(shared_data, checkpoint, tmp_path):
    slide = shared_data / CMU
    measured = SlideSettings(batch_size=32, num_workers=None, progress=False)  # as `ldcsf slide` asks
    run_cohort([slide], checkpoint, tmp_path / "short", measured)
    assert measured.num_workers is None  # nothing measured: the cohort's split stays open for a larger slide
    run_cohort([slide], checkpoint, tmp_path / "reader", SlideSettings(batch_size=32, num_workers=1, progress=False))

    short, reader = (tmp_path / name / "CMU-1-Small-Region" for name in ("short", "reader"))
    tiles = pd.read_parquet(short / "tiles.parquet")
    assert 32 * 2 < len(tiles) <= MIN_TILES_TO_MEASURE  # several batches, too few to time the split
    pd.testing.assert_frame_equal(tiles, pd.read_parquet(reader / "tiles.parquet"), check_exact=True)
    first, second = (json.loads((d / "tsr.json").read_text()) for d in (short, reader))
    assert first["settings"]["num_workers"] == 0 and second["settings"]["num_workers"] == 1
    for key in ("tsr", "hotspot", "label_summary", "hotspot_search"):
        assert first[key] == second[key], key


def test_fixed_cost_benchmark_breaks_a_slide_down(shared_data, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "fixed_cost"
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "fixed_cost.py"), "--quick", "--out", str(out),
                           "--slide", str(shared_data / CMU)], capture_output=True, text=True, cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo / "src")}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    steps = result["profiled_steps_s"]["this / micro checkpoint"]
    whole = steps["whole command (profiled)"]
    for step in ("imports, wherever they happen", "plan: tissue detection", "prediction (tile loop or Trainer.predict)",
                 "runtime: export check, engine built", "  of which the model",
                 "pictures (5 PNG)", "checkpoint load"):
        assert 0 < steps[step] < whole, step
    assert steps["reader/model split measurement"] < 0.05  # a small slide is not timed for the split
    assert result["wall_s"]["this / micro checkpoint"]["best"] > 0 and len(result["load_average_1_5_15"]["before"]) == 3


def test_no_pictures_leaves_out_the_pngs_only(shared_data, checkpoint, tmp_path):
    from ldcsf.cli.main import main

    out = tmp_path / "plain"
    assert main(["slide", str(shared_data / CMU), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--no-pictures", "--no-progress", "--num-workers", "0"]) == 0
    slide_dir = out / "CMU-1-Small-Region"
    assert not list(slide_dir.glob("*.png"))
    record = json.loads((slide_dir / "tsr.json").read_text())
    assert not any(name.endswith(".png") for name in record["files"])
    assert all((slide_dir / name).is_file() for name in record["files"])
    assert "<img" not in (slide_dir / "report.html").read_text()
    # The same numbers as a run with pictures; a rerun with pictures adds them (tests/test_slide_outputs_choice.py).
    run_cohort([shared_data / CMU], checkpoint, tmp_path / "full", SlideSettings(progress=False))
    full = json.loads((tmp_path / "full" / "CMU-1-Small-Region" / "tsr.json").read_text())
    assert record["tsr"] == full["tsr"] and record["hotspot"] == full["hotspot"]
    assert "<img" in (tmp_path / "full" / "CMU-1-Small-Region" / "report.html").read_text()
    pd.testing.assert_frame_equal(pd.read_parquet(slide_dir / "tiles.parquet"),
                                  pd.read_parquet(tmp_path / "full" / "CMU-1-Small-Region" / "tiles.parquet"))
    again = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(progress=False))
    assert again["status"].tolist() == ["ok"] and (slide_dir / "overlay.png").is_file()

