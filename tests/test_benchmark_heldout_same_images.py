"""Recipes scored on the same held-out images: an image only one fold tiles is left out of both."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_benchmarks import run_script


def _fold(root, seed_dir, recipe, source, images):
    """A fold's tile_areas.csv (loso.py's columns): one tile per image, its true and predicted areas."""
    folder = root / seed_dir / recipe / source
    folder.mkdir(parents=True)
    # each recipe's images in a folder of its own (GlaS is resampled per field): matched by file name
    pd.DataFrame([{"path": f"{folder}/{name}_tile.png", "source_image": f"/data/{recipe}/{name}.png", "x": 0, "y": 0,
                   "frac_stroma": stroma, "frac_tumor": 1 - stroma, "row": 0, "col": 0,
                   "area_stroma": pred, "area_tumor": 1 - pred}
                  for name, (stroma, pred) in images.items()]).to_csv(folder / "tile_areas.csv", index=False)


def test_scores_each_recipe_on_the_images_both_score(tmp_path):
    truth = {"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.8}
    for recipe, offset, names in (("lite0_area", 0.1, "abcd"), ("lite0_area_context224", 0.2, "abc")):
        _fold(tmp_path, "seed0", recipe, "glas", {n: (truth[n], truth[n] + offset) for n in "abcd"})
        _fold(tmp_path, "seed0_with_glas", recipe, "wsss4luad_masks", {n: (truth[n], truth[n] - offset) for n in names})
    out = tmp_path / "same"
    run_script("heldout_same_images.py", "--root", str(tmp_path), "--seeds", "0", "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["left_out"] == {"glas": {"0": []}, "wsss4luad_masks": {"0": ["d"]}}
    for recipe, offset in (("lite0_area", 0.1), ("lite0_area_context224", 0.2)):
        wsss = result["results"][recipe]["mean"]["wsss4luad_masks"]
        assert wsss["images"] == 3 and wsss["mae"] == pytest.approx(offset) and wsss["spearman"] == pytest.approx(1.0)
        assert result["results"][recipe]["0"]["glas"]["images"] == 4
    with pytest.raises(AssertionError, match="tile_areas.csv: not found"):
        run_script("heldout_same_images.py", "--root", str(tmp_path), "--seeds", "1", "--out", str(out))
