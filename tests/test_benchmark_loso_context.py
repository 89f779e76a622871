"""Leave-one-source-out with a wider field: the masked sources cut at 224 µm, in folders of their own."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from test_benchmarks import run_script


def test_loso_quick_cuts_the_masked_sources_at_the_recipes_field(tmp_path, shared_data):
    if not (shared_data / "glas" / "manifest.csv").is_file():
        pytest.skip(f"GlaS not found at {shared_data / 'glas'}")
    work, out = tmp_path / "work", tmp_path / "loso"
    run_script("loso.py", "--quick", "--recipes", "lite0_area_context224", "--sources", "wsss4luad_masks",
               "--train-with", "glas", "--threads", "1", "--data", str(shared_data), "--work", str(work),
               "--out", str(out), timeout=400)
    folds = tmp_path / "work_with_glas"
    # 224 µm tiles beside, never in place of, the 112 µm ones (which this run does not need)
    assert not (folds / "pancancer").exists() and not (work / "extra").exists()
    trained_on = pd.read_csv(folds / "lite0_area_context224" / "wsss4luad_masks" / "manifest.csv")
    glas = trained_on[trained_on["dataset"].eq("glas")]
    assert len(glas) and all(p.startswith(str(work / "extra_224um")) for p in glas["path"])
    assert {Image.open(p).size for p in glas["path"]} == {(128, 128)}  # 128 px at 1.75 µm/px
    held = pd.read_csv(folds / "pancancer_224um" / "manifest_quick.csv").query("dataset == 'wsss4luad_masks'")
    assert len(held) and {Image.open(p).size for p in held["path"]} == {(224, 224)}  # twice the 112 px tiles per side
    config = json.loads((folds / "lite0_area_context224" / "wsss4luad_masks" / "run" / "config.json").read_text())
    assert config["mpp"] == 1.75  # the checkpoint records the field the model decides on
    (row,) = json.loads(out.with_suffix(".json").read_text())["results"]
    assert row["recipe"] == "lite0_area_context224" and row["tsr"]["images"] >= 1
