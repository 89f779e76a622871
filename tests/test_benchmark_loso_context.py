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


def test_each_recipe_cuts_the_masked_sources_at_its_own_field_and_input_size():
    import sys

    from test_benchmarks import BENCH

    sys.path.insert(0, str(BENCH))
    try:
        from _recipe import tiling
        from loso import field_suffix, mask_field
    finally:
        sys.path.remove(str(BENCH))

    # The recommended recipe: 128 px over 112 µm, the folders every earlier fold used.
    base = tiling("lite0_area_mid_views_ens3_exclusive")
    assert base == (112, 128) and field_suffix(base) == ""
    assert mask_field(base) == {"glas_mpp": 0.875, "glas_tile_size": 128, "tile_size": 112}
    # A wider field: 128 px over 224 µm, in the folders it always had.
    wide = tiling("lite0_area_context224")
    assert wide == (224, 128) and field_suffix(wide) == "_224um"
    assert mask_field(wide) == {"glas_mpp": 1.75, "glas_tile_size": 128, "tile_size": 224}
    # A larger input over the same field: GlaS from finer pixels, WSSS4LUAD's source pixels unchanged.
    fine = tiling("lite0_area_mid_views_ens3_exclusive_224px")
    assert fine == (112, 224) and field_suffix(fine) == "_224px"
    assert mask_field(fine) == {"glas_mpp": 0.5, "glas_tile_size": 224, "tile_size": 112}
