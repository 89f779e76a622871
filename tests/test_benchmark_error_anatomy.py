"""heldout_error_anatomy.py: where a recipe's held-out stroma-fraction error lies, from fold tile tables."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_benchmarks import BENCH, REPO, run_script

RECIPE = "lite0_area_mid_views_ens3"  # three heads on each of two views: members 0-2 plain, 3-5 Macenko


def fold_table(true_stroma: list[float], plain: float, macenko: float) -> pd.DataFrame:
    """One tile per image (tumour = 1 - stroma in the mask); the plain heads read `plain` more stroma
    than the mask, the Macenko heads `macenko`; each tile's areas leave 40 % to no label."""
    rows = []
    for i, s in enumerate(true_stroma):
        row = {"source_image": f"img{i}.png", "row": 0, "col": 0, "frac_stroma": s, "frac_tumor": 1 - s}
        members = [s + plain] * 3 + [s + macenko] * 3
        for m, share in enumerate(members):
            row |= {f"member{m}_area_stroma": 0.6 * share, f"member{m}_area_tumor": 0.6 * (1 - share)}
        mean = float(np.mean(members))
        row |= {"area_stroma": 0.6 * mean, "area_tumor": 0.6 * (1 - mean), "area_necrosis": 0.0, "area_non_tumor": 0.0}
        rows.append(row)
    return pd.DataFrame(rows)


def test_bias_range_unlabelled_area_and_member_averages(tmp_path):
    true = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    for folder in (tmp_path / "seed0" / RECIPE / "glas", tmp_path / "seed0_with_glas" / RECIPE / "wsss4luad_masks"):
        folder.mkdir(parents=True)
        fold_table(true, plain=0.1, macenko=-0.02).to_csv(folder / "tile_areas.csv", index=False)
    out = tmp_path / "anatomy"
    run_script("heldout_error_anatomy.py", "--root", str(tmp_path), "--recipe", RECIPE, "--seeds", "0", "--out", str(out))
    glas = json.loads(out.with_suffix(".json").read_text())["results"]["0"]["glas"]
    assert glas["images"] == 6 and glas["bias"] == pytest.approx(0.04)  # the six heads' mean: (3 x 0.1 - 3 x 0.02) / 6
    assert glas["true_p10_p90"] == pytest.approx(np.quantile(true, [0.1, 0.9]).tolist())
    assert glas["unlabelled_area_share"] == pytest.approx(0.4) and glas["mask_unlabelled_share"] == pytest.approx(0.0)
    averages = glas["averages"]
    assert averages["plain heads only"]["mae"] == pytest.approx(0.1)
    assert averages["macenko heads only"]["mae"] == pytest.approx(0.02)
    assert averages["median of the heads"]["mae"] == pytest.approx(0.04)  # between the two views' values
    assert averages["mean of all heads"]["spearman"] == pytest.approx(1.0)


def test_a_missing_fold_is_named(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "heldout_error_anatomy.py"), "--root", str(tmp_path),
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0 and "no tile_areas.csv (run loso.py for this fold)" in proc.stderr
    assert not (tmp_path / "x.json").exists()
