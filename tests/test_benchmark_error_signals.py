"""heldout_error_signals.py: run-time signals ranked against each held-out image's stroma-fraction error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_benchmarks import BENCH, run_script

RECIPE = "lite0_area_mid_views_ens3_exclusive"


def fold_table(true_stroma: list[float], offsets: list[float]) -> pd.DataFrame:
    """One tile per image (tumour = 1 - stroma); image i's six members read true + offsets[i] +- its
    own spread, so both the error and the spread grow with the offset."""
    rows = []
    for i, (s, off) in enumerate(zip(true_stroma, offsets)):
        members = [s + off + d for d in (-off, off, -off / 2, off / 2, 0.0, 0.0)]
        row = {"source_image": f"img{i}.png", "path": f"img{i}_tile.png", "frac_stroma": s, "frac_tumor": 1 - s,
               "area_stroma": float(np.mean(members)), "area_tumor": 1 - float(np.mean(members))}
        for m, share in enumerate(members):
            row |= {f"member{m}_area_stroma": share, f"member{m}_area_tumor": 1 - share}
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_spread_ranks_an_error_that_grows_with_it(tmp_path):
    offsets = [0.0, 0.02, 0.04, 0.06, 0.08, 0.10]
    for folder in (tmp_path / "seed0" / RECIPE / "glas", tmp_path / "seed0_with_glas" / RECIPE / "wsss4luad_masks"):
        folder.mkdir(parents=True)
        table = fold_table([0.3, 0.4, 0.5, 0.35, 0.45, 0.55], offsets)
        # An image without tumour in its mask is not scored (a TSR is scored in tumours).
        table.loc[len(table)] = table.iloc[0].to_dict() | {"source_image": "benign.png", "frac_tumor": 0.0}
        table.to_csv(folder / "tile_areas.csv", index=False)
    out = tmp_path / "signals"
    run_script("heldout_error_signals.py", "--root", str(tmp_path), "--recipe", RECIPE, "--seeds", "0",
               "--no-distance", "--out", str(out))
    glas = json.loads(out.with_suffix(".json").read_text())["results"]["glas"]["0"]
    assert glas["images"] == 6 and glas["mae"] == pytest.approx(np.mean(offsets))
    spread = glas["signals"]["spread"]
    assert spread["spearman"] == pytest.approx(1.0)
    assert spread["error_low_third"] < spread["error_high_third"]
    assert "distance" not in glas["signals"]  # --no-distance: no backbone run
    assert "ensemble spread" in out.with_suffix(".md").read_text()


def test_tissue_of_another_lab_lies_further_from_the_training_tiles(shared_data):
    """Real tiles and the shipped model's backbone: colon images of another lab (GlaS) are further from
    NCT-CRC-HE's tiles than NCT-CRC-HE tiles left out of the fit."""
    from ldcsf.data.transforms import eval_transforms
    from ldcsf.shipped import load_shipped

    sys.path.insert(0, str(BENCH))
    try:
        from heldout_error_signals import pooled_maps, training_distance
    finally:
        sys.path.remove(str(BENCH))
    nct = sorted(str(p) for p in (shared_data / "nct_crc").iterdir() if "BACK" not in p.name)
    fit, kept_out = nct[::3] + nct[1::3], nct[2::3]
    # 180 px of GlaS at 0.62 µm/px: about the 112 µm the model's tiles span.
    glas = [Image.open(path).convert("RGB").crop((0, 0, 180, 180))
            for path in sorted((shared_data / "glas" / "images").glob("testA_*.jpg"))[:8]]
    loaded = load_shipped()
    transform = eval_transforms(loaded.meta.input_spec)
    model = loaded.model
    train = pooled_maps(model, transform, fit)
    assert train.shape[1] == 2 * 2 * 112  # two stain views of 112 channels, mean and spread of each
    near = training_distance(train, pooled_maps(model, transform, kept_out))
    far = training_distance(train, pooled_maps(model, transform, glas))
    assert np.median(far) > np.median(near), (np.median(far), np.median(near))
