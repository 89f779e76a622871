"""The linear probe on loso.py's GlaS fold, and the seed-by-seed comparison that reads both."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_benchmarks import BENCH, run_script


def test_probe_scores_the_glas_fold_as_loso_does_and_the_comparison_reads_both(tmp_path, shared_data):
    if not (shared_data / "glas" / "manifest.csv").is_file():
        pytest.skip(f"GlaS not found at {shared_data / 'glas'}")
    work = tmp_path / "seed0"
    common = ("--quick", "--sources", "glas", "--threads", "1", "--data", str(shared_data), "--work", str(work))
    run_script("loso.py", *common, "--recipes", "lite0_area", "--out", str(tmp_path / "loso"), timeout=400)
    run_script("linear_probe.py", *common, "--recipe", "lite0_area", timeout=400)

    probe = json.loads((work / "linear_probe" / "glas" / "scores.json").read_text())
    model = json.loads((work / "lite0_area" / "glas" / "scores.json").read_text())
    trained_on = pd.read_csv(work / "linear_probe" / "glas" / "manifest.csv")
    assert "glas" not in set(trained_on["dataset"])  # the fold never sees the source it scores
    assert probe["images"] == model["images"] and probe["tsr"]["images"] == model["tsr"]["images"] == 2
    assert 0 <= probe["tsr"]["mae"] <= 1 and probe["ridge_alpha"]["stroma"] > 0
    assert "tumor" in probe["area_auroc"] and "tumor" in model["area_auroc"]  # the 4 quick images: tumour and not
    tiles = pd.read_csv(work / "linear_probe" / "glas" / "tile_areas.csv")
    assert len(tiles) == probe["images"] and tiles[["area_stroma", "area_tumor"]].stack().between(0, 1).all()
    # The probe reuses the fold's cached maps: no second cache key for the same backbone settings.
    assert len(list((work / "cache").iterdir())) == 1
    # WSSS4LUAD held out: no other source of the default set has masks, so no area can be fitted.
    with pytest.raises(AssertionError, match="no mask tiles give a stroma or tumor area"):
        run_script("linear_probe.py", *common[:2], "wsss4luad_masks", *common[3:], timeout=400)

    out = tmp_path / "compare"
    run_script("heldout_compare.py", "--root", str(tmp_path), "--seeds", "0", "--recipes", "linear_probe",
               "lite0_area", "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["results"]["linear_probe"]["0"]["GlaS MAE"] == pytest.approx(probe["tsr"]["mae"])
    assert result["results"]["lite0_area"]["mean"]["GlaS Spearman"] == pytest.approx(model["tsr"]["spearman"])
    # WSSS4LUAD, nct_crc and oral folds not run: undecided, unless the probe already lost on GlaS
    lost = probe["tsr"]["mae"] >= model["tsr"]["mae"] or probe["tsr"]["spearman"] <= model["tsr"]["spearman"]
    assert result["beats_baseline"] == {"linear_probe": False if lost else None}
    assert result["beats_baseline_on_masked_sources_together"] == {"linear_probe": None}


def test_a_recipe_beats_the_baseline_only_by_winning_both_masked_sources_and_keeping_aurocs():
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        from heldout_compare import beats, beats_together
    finally:
        sys.path.remove(str(BENCH))

    base = {"GlaS MAE": 0.13, "GlaS Spearman": 0.43, "WSSS4LUAD MAE": 0.17, "WSSS4LUAD Spearman": 0.5,
            "nct_crc stroma AUROC": 0.78, "nct_crc tumour AUROC": 0.8, "oral tumour AUROC": 0.55}
    better = base | {"GlaS MAE": 0.12, "GlaS Spearman": 0.5, "WSSS4LUAD MAE": 0.15, "WSSS4LUAD Spearman": 0.6}
    assert beats(better, base, 0.02)
    assert not beats(better | {"WSSS4LUAD MAE": 0.18}, base, 0.02)
    assert not beats(better | {"oral tumour AUROC": 0.52}, base, 0.02)
    assert beats(better | {"oral tumour AUROC": 0.54}, base, 0.02)
    assert beats(better | {"GlaS MAE": None}, base, 0.02) is None
    assert beats(better | {"GlaS MAE": 0.2, "WSSS4LUAD MAE": None}, base, 0.02) is False  # lost already

    # Together: averaged over both masked sources, neither worse by more than the slack.
    mixed = base | {"GlaS MAE": 0.139, "GlaS Spearman": 0.42, "WSSS4LUAD MAE": 0.14, "WSSS4LUAD Spearman": 0.75}
    assert not beats(mixed, base, 0.02) and beats_together(mixed, base, 0.02, 0.01, 0.05)
    assert not beats_together(mixed | {"GlaS MAE": 0.145}, base, 0.02, 0.01, 0.05)  # GlaS worse beyond the slack
    assert not beats_together(mixed | {"GlaS Spearman": 0.37}, base, 0.02, 0.01, 0.05)
    assert not beats_together(mixed | {"WSSS4LUAD Spearman": 0.5}, base, 0.02, 0.01, 0.05)  # mean rho not higher
    assert not beats_together(mixed | {"nct_crc tumour AUROC": 0.7}, base, 0.02, 0.01, 0.05)
    assert beats_together(mixed | {"oral tumour AUROC": None}, base, 0.02, 0.01, 0.05) is None


def test_recorded_rows_are_judged_as_measured_ones_when_their_folds_are_gone(tmp_path):
    """A recipe read back from an earlier results file gets the verdict that file gave it."""
    from test_benchmarks import REPO

    earlier = REPO / "benchmarks" / "results" / "heldout_ens3_orders.json"
    recorded = json.loads(earlier.read_text())
    out = tmp_path / "compare"
    run_script("heldout_compare.py", "--root", str(tmp_path / "no_folds"), "--seeds", "0", "1", "2",
               "--baseline", "lite0_area_mid", "--recipes", "lite0_area_mid", "lite0_area_mid_ens3",
               "--recorded", str(earlier), "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["results"]["lite0_area_mid_ens3"] == recorded["results"]["lite0_area_mid_ens3"]
    assert result["beats_baseline"]["lite0_area_mid_ens3"] == recorded["beats_baseline"]["lite0_area_mid_ens3"]
    assert set(result["recorded"]) == {"lite0_area_mid", "lite0_area_mid_ens3"}
    assert "lite0_area_mid_ens3 (recorded)" in out.with_suffix(".md").read_text()
    # A seed the file never measured is refused, not averaged over the seeds it has.
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        from heldout_compare import main
    finally:
        sys.path.remove(str(BENCH))
    with pytest.raises(SystemExit, match=rf"{earlier.name}: lite0_area_mid has no recorded row for seed\(s\) \[5\]"):
        main(["--root", str(tmp_path / "no_folds"), "--seeds", "0", "5", "--baseline", "lite0_area_mid",
              "--recipes", "lite0_area_mid", "--recorded", str(earlier), "--out", str(out)])
