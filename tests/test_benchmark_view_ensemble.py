"""view_ensemble.py: folds of several recipes averaged as one ensemble, scored as loso.py scores a fold."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_benchmarks import run_script


def test_one_recipe_averaged_alone_reproduces_its_fold_and_two_recipes_stack_their_members(tmp_path, shared_data):
    if not (shared_data / "glas" / "manifest.csv").is_file():
        pytest.skip(f"GlaS not found at {shared_data / 'glas'}")
    work = tmp_path / "seed0"
    common = ("--quick", "--sources", "glas", "--threads", "1", "--data", str(shared_data))
    run_script("loso.py", *common, "--work", str(work), "--recipes", "lite0_area_mid_ens3", "lite0_area_mid",
               "--out", str(tmp_path / "loso"), timeout=600)
    averaged = ("view_ensemble.py", *common, "--root", str(tmp_path), "--seeds", "0")

    # The three-head fold read back through the averaging: the same scores and tile areas as loso.py's.
    run_script(*averaged, "--recipes", "lite0_area_mid_ens3", "--name", "alone", timeout=400)
    fold = json.loads((work / "lite0_area_mid_ens3" / "glas" / "scores.json").read_text())
    alone = json.loads((work / "alone" / "glas" / "scores.json").read_text())
    assert alone["members"] == 3 and alone["tsr"] == pytest.approx(fold["tsr"])
    assert alone["area_auroc"] == pytest.approx(fold["area_auroc"])
    pd.testing.assert_frame_equal(pd.read_csv(work / "alone" / "glas" / "tile_areas.csv"),
                                  pd.read_csv(work / "lite0_area_mid_ens3" / "glas" / "tile_areas.csv"), atol=1e-5)

    # Two heads of the ensemble and the single head: three members, each one's areas kept for the interval.
    run_script(*averaged, "--recipes", "lite0_area_mid_ens3:0,2", "lite0_area_mid", "--name", "mixed", timeout=400)
    mixed = json.loads((work / "mixed" / "glas" / "scores.json").read_text())
    tiles = pd.read_csv(work / "mixed" / "glas" / "tile_areas.csv")
    assert mixed["members"] == 3 and mixed["averages"] == ["lite0_area_mid_ens3:0,2", "lite0_area_mid"]
    assert {f"member{k}_area_stroma" for k in range(3)} <= set(tiles.columns) and "member3_area_stroma" not in tiles
    single = pd.read_csv(work / "lite0_area_mid" / "glas" / "tile_areas.csv")
    assert tiles["member2_area_stroma"].to_numpy() == pytest.approx(single["area_stroma"].to_numpy(), abs=1e-5)
    assert tiles["member1_area_tumor"].to_numpy() == pytest.approx(
        pd.read_csv(work / "lite0_area_mid_ens3" / "glas" / "tile_areas.csv")["member2_area_tumor"].to_numpy(), abs=1e-5)

    # heldout_compare.py reads the averaged fold as a recipe of its own.
    out = tmp_path / "compare"
    run_script("heldout_compare.py", "--root", str(tmp_path), "--seeds", "0", "--baseline", "lite0_area_mid",
               "--recipes", "lite0_area_mid", "mixed", "--out", str(out))
    row = json.loads(out.with_suffix(".json").read_text())["results"]["mixed"]["0"]
    assert row["GlaS MAE"] == pytest.approx(mixed["tsr"]["mae"])

    # A member the recipe does not have: one clear line, nothing written.
    with pytest.raises(AssertionError, match="has 1 member"):
        run_script(*averaged, "--recipes", "lite0_area_mid:1", "--name", "bad", timeout=400)
    assert not (work / "bad" / "glas" / "scores.json").exists()
