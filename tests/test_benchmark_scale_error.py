"""heldout_scale_error.py: the masked sources cut as a run told the wrong µm/px would cut them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_benchmarks import bench_module

scale_error = bench_module("heldout_scale_error")


def test_a_run_told_twice_the_um_per_px_cuts_half_the_field():
    # at the true scale: the tiles every fold is trained and scored on (128 px at 0.875 µm/px, 112 px of WSSS4LUAD)
    assert scale_error.cut_arguments(1.0) == {"glas_mpp": 0.875, "glas_tile_size": 128, "tile_size": 112}
    # told 2x: a 112 µm tile spans 56 µm of tissue, shown enlarged; told 0.5x: 224 µm, shrunk
    assert scale_error.cut_arguments(2.0) == {"glas_mpp": 0.4375, "glas_tile_size": 128, "tile_size": 56}
    assert scale_error.cut_arguments(0.5) == {"glas_mpp": 1.75, "glas_tile_size": 128, "tile_size": 224}


def test_the_true_scale_is_always_the_reference_and_factors_must_be_positive():
    assert scale_error.parse_args(["--factors", "2", "0.5"]).factors == [0.5, 1.0, 2.0]
    with pytest.raises(SystemExit):
        scale_error.parse_args(["--factors", "0"])


def test_shifts_are_measured_against_the_true_scale_on_the_images_both_score():
    reference = pd.DataFrame({"true": [0.3, 0.6, 0.45], "pred": [0.40, 0.55, 0.48]}, index=["a", "b", "c"])
    moved = pd.DataFrame({"true": [0.3, 0.6], "pred": [0.30, 0.45]}, index=["a", "b"])  # c dropped (too small)
    out = scale_error.shifts(moved, reference)
    assert out["images_compared"] == 2
    assert out["mean_abs_shift"] == pytest.approx(0.10) and out["mean_shift"] == pytest.approx(-0.10)
    assert out["flipped_high_low"] == pytest.approx(0.5)  # b: 0.55 (high) -> 0.45 (low); a stays low


def test_wsss4luad_recut_at_each_factor_keeps_each_images_true_fraction(shared_data, tmp_path):
    if not (shared_data / "wsss4luad" / "validation").is_dir():
        pytest.skip(f"WSSS4LUAD validation masks not found under {shared_data}")
    truth = {}
    for factor, px in ((1.0, 112), (2.0, 56)):
        tiles = scale_error.recut("wsss4luad_masks", factor, shared_data, tmp_path)
        assert {Image.open(p).size for p in tiles["path"].iloc[:20]} == {(px, px)}
        assert (tmp_path / "wsss4luad_masks" / f"x{factor:g}" / "rows.csv").is_file()  # kept for reruns
        fake_areas = tiles[["frac_stroma", "frac_tumor"]].to_numpy()  # the masks' own areas as the "model"
        areas = np.zeros((len(tiles), 4))
        areas[:, 0], areas[:, 3] = fake_areas[:, 0], fake_areas[:, 1]
        per_image = scale_error.image_tsr(tiles, areas, ["stroma", "necrosis", "non_tumor", "tumor"])
        assert np.allclose(per_image["pred"], per_image["true"])
        truth[factor] = per_image["true"]
    both = pd.concat(truth, axis=1, join="inner")
    assert len(both) >= 20
    # the same images, the same tissue: the true fraction moves only by the tiles' edges and skipped background
    assert float((both[1.0] - both[2.0]).abs().median()) < 0.03
