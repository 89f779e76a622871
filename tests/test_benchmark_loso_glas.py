"""Leave-one-source-out with GlaS held out: the fold never trains on it, each image gets a TSR score."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_benchmarks import run_script


def test_loso_quick_holds_out_glas_and_scores_tsr_per_image(tmp_path, shared_data):
    if not (shared_data / "glas" / "manifest.csv").is_file():
        pytest.skip(f"GlaS not found at {shared_data / 'glas'}")
    work, out = tmp_path / "work", tmp_path / "loso"
    run_script("loso.py", "--quick", "--recipes", "lite0_area", "--sources", "glas", "--threads", "1",
               "--data", str(shared_data), "--work", str(work), "--out", str(out), timeout=400)
    (row,) = json.loads(out.with_suffix(".json").read_text())["results"]
    trained_on = pd.read_csv(work / "lite0_area" / "glas" / "manifest.csv")
    assert "glas" not in set(trained_on["dataset"])
    held = pd.read_csv(work / "extra" / "glas" / "rows_quick.csv")
    assert row["images"] == len(held) and set(held["glas_grade"]) == {"benign", "malignant"}
    # TSR is scored on the images with tumour in their mask (the two malignant ones)
    assert row["tsr"]["images"] == held.loc[held["glas_grade"].eq("malignant"), "source_image"].nunique() == 2
    assert 0 <= row["tsr"]["mae"] <= 1 and 0 <= row["tsr"]["high_low_agreement"] <= 1
    tiles = pd.read_csv(work / "lite0_area" / "glas" / "tile_areas.csv")
    assert len(tiles) == len(held) and tiles[["area_stroma", "area_tumor"]].stack().between(0, 1).all()
    assert "| glas | lite0_area | 2 |" in out.with_suffix(".md").read_text()

    # The held-out table reads the fold's tile areas: one entry per source, coverage of the intervals.
    run_script("heldout_sources.py", "--recipe", "lite0_area", "--work", str(work), "--out", str(tmp_path / "heldout"))
    glas = json.loads((tmp_path / "heldout.json").read_text())["sources"]["glas"]
    assert glas["images"] == 4 and glas["tsr_images"] == 2 and glas["tiles"] == len(held)
    assert glas["mae"] == pytest.approx(row["tsr"]["mae"], rel=1e-5) and 0 <= glas["coverage"] <= 1
    assert set(glas["accuracy"]) == {"stroma", "non_tumor", "tumor"}  # GlaS annotates no necrosis

    # A source's fold read from another folder (--fold), as the recipe trained with GlaS is scored.
    run_script("heldout_sources.py", "--recipe", "lite0_area", "--work", str(tmp_path / "no_folds_here"), "--fold",
               f"glas={work / 'lite0_area' / 'glas'}", "--out", str(tmp_path / "heldout_fold"))
    moved = json.loads((tmp_path / "heldout_fold.json").read_text())
    assert moved["sources"]["glas"] == glas and moved["folds"]["glas"].endswith("lite0_area/glas")
