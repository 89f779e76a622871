"""Leave-one-source-out with GlaS added to every fold's training, WSSS4LUAD held out and scored by TSR."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_benchmarks import run_script


def test_loso_quick_trains_with_glas_in_its_own_work_folder(tmp_path, shared_data):
    if not (shared_data / "glas" / "manifest.csv").is_file():
        pytest.skip(f"GlaS not found at {shared_data / 'glas'}")
    work, out = tmp_path / "work", tmp_path / "loso"
    run_script("loso.py", "--quick", "--recipes", "lite0_area", "--sources", "wsss4luad_masks", "--train-with", "glas",
               "--threads", "1", "--data", str(shared_data), "--work", str(work), "--out", str(out), timeout=400)
    fold = tmp_path / "work_with_glas" / "lite0_area" / "wsss4luad_masks"
    assert not (work / "lite0_area").exists()  # the default folds are never mixed with these
    trained_on = pd.read_csv(fold / "manifest.csv")
    assert "wsss4luad_masks" not in set(trained_on["dataset"]) and "glas" in set(trained_on["dataset"])
    glas = trained_on[trained_on["dataset"].eq("glas")]
    assert glas.groupby("group")["split"].nunique().max() == 1  # a patient stays in one split
    (row,) = json.loads(out.with_suffix(".json").read_text())["results"]
    assert row["source"] == "wsss4luad_masks" and row["tsr"]["images"] >= 1
    assert (fold / "tile_areas.csv").is_file()
