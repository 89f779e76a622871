"""The TSR interval's model-error margin: the combination rule, the conformal fit, the checkpoint
field that carries it, and a real slide run with and without it."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ldcsf import create_model
from ldcsf.analysis.interval_calibration import (
    IntervalCalibration, conformal_margin, conformity_scores, expit, interval_calibration_from_dict, widen,
)
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.export.slide_outputs import TSR_JSON
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.shipped import SHIPPED_DIR, SHIPPED_NAME, load_shipped

CMU = "slides/CMU-1-Small-Region.svs"
CALIBRATION = {"margin_logit": 1.0, "level": 0.95,
               "sources": {"glas": {"images": 91}, "wsss4luad_masks": {"images": 26}}, "fitted_by": "test"}


# -- the combination rule: known inputs, known interval ---------------------------------------------
def test_the_margin_adds_in_quadrature_on_the_logit_scale():
    one = IntervalCalibration(margin_logit=1.0)
    # No sampling width: the margin alone, expit(0 ± 1).
    assert widen(0.5, 0.5, 0.5, one) == pytest.approx((expit(-1.0), expit(1.0)))
    # Sampling 0.4..0.6 is ±log(1.5) logits around 0.5: each side sqrt(log(1.5)² + 1).
    side = math.hypot(math.log(1.5), 1.0)
    assert widen(0.5, 0.4, 0.6, one) == pytest.approx((expit(-side), expit(side)))
    # Asymmetric: each side keeps its own sampling width.
    low, high = widen(0.2, 0.1, 0.25, one)
    l0, lo, hi = math.log(0.25), math.log(0.1 / 0.9), math.log(0.25 / 0.75)
    assert (low, high) == pytest.approx((expit(l0 - math.hypot(l0 - lo, 1)), expit(l0 + math.hypot(hi - l0, 1))))
    # No margin: the sampling interval unchanged; a margin reaching the 1 % clip writes 0 or 1.
    assert widen(0.3, 0.25, 0.35, IntervalCalibration(margin_logit=0.0)) == pytest.approx((0.25, 0.35))
    assert widen(0.03, 0.02, 0.05, IntervalCalibration(margin_logit=2.0))[0] == 0.0
    assert widen(0.97, 0.95, 0.98, IntervalCalibration(margin_logit=2.0))[1] == 1.0


def test_a_score_is_the_least_margin_that_covers():
    rng = np.random.default_rng(0)
    point = rng.uniform(0.05, 0.95, 200)
    low, high = point - rng.uniform(0, 0.05, 200), point + rng.uniform(0, 0.05, 200)
    true = np.clip(point + rng.normal(0, 0.2, 200), 0, 1)
    scores = conformity_scores(true, point, low, high)
    assert (scores == 0).sum() > 10 and (scores > 0.5).sum() > 50  # both kinds of image are tested

    def covers(i: int, margin: float) -> bool:
        a, b = widen(point[i], low[i], high[i], IntervalCalibration(margin_logit=margin))
        return a <= true[i] <= b

    for i, score in enumerate(scores):
        assert covers(i, score + 1e-6)
        assert score == 0 or not covers(i, max(score - 1e-3, 0.0))  # 0: sampling alone covers it


def test_the_conformal_margin_weighs_each_source_alike():
    # 19 of 20 images: the 95 % margin with the finite-sample correction is the largest score.
    assert conformal_margin(np.arange(1.0, 21.0), ["a"] * 20, 0.90) == 19.0
    assert conformal_margin(np.arange(1.0, 21.0), ["a"] * 20, 0.95) == 20.0
    # Three small scores of one source, one large of another: the large source weighs half.
    assert conformal_margin([1.0, 1.0, 1.0, 5.0], ["a", "a", "a", "b"], 0.5) == 5.0
    assert conformal_margin([1.0, 1.0, 1.0, 5.0], ["a", "a", "a", "a"], 0.5) == 1.0
    with pytest.raises(ValueError, match="no held-out images"):
        conformal_margin([], [], 0.95)


# -- the checkpoint field ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    ({"level": 0.95}, "has no margin_logit"),
    ({"margin_logit": -1.0}, "margin_logit must be a number in [0, 9.19]"),
    ({"margin_logit": float("nan")}, "margin_logit must be a number"),
    ({"margin_logit": 1.0, "level": 1.5}, "level must be a coverage in [0.5, 1)"),
    ({"margin_logit": 1.0, "method": "bonferroni"}, "method must be"),
    ({"margin_logit": 1.0, "sources": ["glas"]}, "sources must map"),
    ({"margin_logit": 1.0, "sources": {"glas": {"images": "many"}}}, "sources' images must be counts"),
    ({"margin_logit": 1.0, "shift": 2}, "has unknown keys ['shift']"),
    ("wide", "must be null or a mapping"),
])
def test_a_bad_calibration_is_named_in_one_line(tmp_path, value, message):
    model = create_model("ldcsf_swin_micro")
    meta = CheckpointMeta.for_model(model)
    meta.interval_calibration = value
    path = save_checkpoint(tmp_path / "bad.pt", model, meta)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: checkpoint meta 'interval_calibration' {message}"), str(err.value)
    assert "\n" not in str(err.value)


def test_a_good_calibration_round_trips(tmp_path):
    model = create_model("ldcsf_swin_micro")
    meta = CheckpointMeta.for_model(model)
    meta.interval_calibration = CALIBRATION
    loaded = load_checkpoint(save_checkpoint(tmp_path / "good.pt", model, meta))
    assert interval_calibration_from_dict(loaded.meta.interval_calibration).margin_logit == 1.0
    old = CheckpointMeta.from_dict({k: v for k, v in meta.to_dict().items() if k != "interval_calibration"})
    assert old.interval_calibration is None  # checkpoints written before the field: sampling only


# -- a real slide, the same weights with and without the margin -------------------------------------
@pytest.fixture(scope="module")
def cmu_runs(shared_data, tmp_path_factory):
    """The CMU slide through `run_cohort` with one micro model (~100 tiles), uncalibrated and calibrated."""
    model = create_model("ldcsf_swin_micro")
    folder = tmp_path_factory.mktemp("ckpt")
    plain = CheckpointMeta.for_model(model, thresholds=[0.5] * 4, mpp=1.25)
    calibrated = CheckpointMeta.from_dict({**plain.to_dict(), "interval_calibration": CALIBRATION})
    runs = {}
    for name, meta in (("plain", plain), ("calibrated", calibrated)):
        checkpoint = save_checkpoint(folder / f"{name}.pt", model, meta)
        out = tmp_path_factory.mktemp(name)
        run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(batch_size=32, progress=False))
        runs[name] = (out, json.loads((out / "CMU-1-Small-Region" / TSR_JSON).read_text()))
    return runs


def test_the_calibrated_slide_interval_is_the_sampling_one_widened(cmu_runs):
    (_, plain), (out, calibrated) = cmu_runs["plain"], cmu_runs["calibrated"]
    assert plain["tsr"]["stroma_fraction"] == calibrated["tsr"]["stroma_fraction"]  # the same predictions
    low, high = plain["tsr"]["stroma_fraction_interval"]
    assert plain["tsr"]["interval_method"].endswith("sampling only (no model-error margin in the checkpoint)")
    expected = widen(plain["tsr"]["stroma_fraction"], low, high, IntervalCalibration(margin_logit=1.0))
    assert calibrated["tsr"]["stroma_fraction_interval"] == pytest.approx(list(expected))
    c_low, c_high = expected
    assert c_low < low and c_high > high and c_high - c_low > 0.3  # a margin of 1 logit is wide
    method = calibrated["tsr"]["interval_method"]
    assert "sampling only" not in method and "model-error margin of 1.00 logits" in method
    assert "117 held-out images of glas, wsss4luad_masks" in method
    assert calibrated["tsr"]["near_cutoff"] == (c_low <= 0.5 < c_high)
    cohort = pd.read_csv(out / "cohort.csv")
    assert cohort.loc[0, "stroma_fraction_low"] == pytest.approx(c_low)
    assert cohort.loc[0, "stroma_fraction_high"] == pytest.approx(c_high)


def test_the_hotspot_gets_the_same_margin():
    """A hand-made 40 x 40 tile section (tumour everywhere, stroma rising to the right): a hotspot exists."""
    from ldcsf.analysis.slide_analysis import analyse_slide
    from tile_grids import tile_table_from_grids

    rng = np.random.default_rng(0)
    stroma = np.clip(np.linspace(0.1, 0.9, 40)[None, :] + rng.normal(0, 0.1, (40, 40)), 0, 1)
    probabilities = {"stroma": stroma, "necrosis": np.zeros((40, 40)), "non_tumor": np.zeros((40, 40)),
                     "tumor": 1 - stroma}
    tiles = tile_table_from_grids(probabilities, tile_size=256, mpp=0.5)
    args = dict(labels=list(probabilities), thresholds=[0.5] * 4, mpp=0.5, dimensions=(40 * 256, 40 * 256))
    plain = analyse_slide(tiles, **args)
    calibrated = analyse_slide(tiles, **args, interval_calibration=IntervalCalibration(margin_logit=1.0))
    assert plain.hotspot is not None and calibrated.hotspot.tile_ids == plain.hotspot.tile_ids
    for mine, theirs, point in ((calibrated.hotspot_interval, plain.hotspot_interval, plain.hotspot.stroma_fraction),
                                (calibrated.stroma_interval, plain.stroma_interval, plain.tsr.stroma_fraction)):
        expected = widen(point, theirs.low, theirs.high, IntervalCalibration(margin_logit=1.0))
        assert (mine.low, mine.high) == pytest.approx(expected)
        assert mine.low < theirs.low and mine.high > theirs.high and "model-error margin" in mine.method


# -- the benchmark's cross-source test and the shipped model's copy of its result -------------------
REPO = Path(__file__).resolve().parents[1]


def _import(folder: str, name: str):
    sys.path.insert(0, str(REPO / folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / folder))


def test_each_source_is_tested_with_the_margin_of_the_others():
    bench = _import("benchmarks", "interval_calibration")
    # No sampling width; source a is off by 1 logit, source b by 3 (each image, each side).
    point = np.full(20, 0.5)
    true = np.concatenate([expit(np.tile([-1.0, 1.0], 5)), expit(np.tile([-3.0, 3.0], 5))])
    images = pd.DataFrame({"source": ["a"] * 10 + ["b"] * 10, "image": [f"i{k}" for k in range(20)], "true": true,
                           "pred": point, "low": point, "high": point})
    images["score"] = conformity_scores(images["true"], images["pred"], images["low"], images["high"])
    per_source, pooled = bench.cross_source(images, 0.95)
    assert per_source["a"]["margin_logit"] == pytest.approx(3.0) and per_source["a"]["coverage"] == 1.0
    assert per_source["b"]["margin_logit"] == pytest.approx(1.0) and per_source["b"]["coverage"] == 0.0
    assert bench.summary(pooled)["coverage"] == 0.5 and per_source["a"]["sampling_coverage"] == 0.0
    # Fitted on both, each source weighing half: the 95 % margin is b's.
    assert bench.fit(images, 0.95).margin_logit == pytest.approx(3.0)


def test_the_shipped_card_carries_a_checked_calibration(tmp_path):
    build = _import("tools", "build_shipped_model")
    folder = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, folder)
    results = tmp_path / "interval_calibration.json"
    results.write_text(json.dumps({"recipe": build.RECOMMENDED, "interval_calibration": CALIBRATION}))
    build.main(["--calibration-only", "--interval-calibration", str(results), "--out", str(folder)])
    assert load_shipped(folder).meta.interval_calibration == interval_calibration_from_dict(CALIBRATION).to_dict()
    results.write_text(json.dumps({"recipe": "another", "interval_calibration": CALIBRATION}))
    with pytest.raises(SystemExit, match="calibrated on recipe 'another'"):
        build.main(["--calibration-only", "--interval-calibration", str(results), "--out", str(folder)])
    card = json.loads((folder / f"{SHIPPED_NAME}.json").read_text())
    card["meta"]["interval_calibration"]["margin_logit"] = "wide"
    (folder / f"{SHIPPED_NAME}.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"\.json: checkpoint meta 'interval_calibration' margin_logit must be"):
        load_shipped(folder)


def test_seeds_pool_into_one_margin_and_each_image_counts_once():
    bench = _import("benchmarks", "interval_calibration")
    # Source a scored by two seeds' folds (off by 1 and by 2 logits), source b by one (off by 3).
    point = np.full(30, 0.5)
    true = np.concatenate([expit(np.tile([-1.0, 1.0], 5)), expit(np.tile([-2.0, 2.0], 5)), expit(np.tile([-3.0, 3.0], 5))])
    images = pd.DataFrame({"source": ["a"] * 20 + ["b"] * 10, "image": [f"i{k % 10}" for k in range(20)] +
                           [f"j{k}" for k in range(10)], "true": true, "pred": point, "low": point, "high": point})
    images["score"] = conformity_scores(images["true"], images["pred"], images["low"], images["high"])
    folds = {"a": [{"fold": "seed0/a"}, {"fold": "seed1/a"}], "b": [{"fold": "seed0/b"}]}
    calibration = bench.fit(images, 0.95, folds=folds)
    assert calibration.sources["a"] == {"images": 10, "scores": 20, "folds": folds["a"]}
    assert calibration.sources["b"] == {"images": 10, "fold": "seed0/b"}
    # a's twenty scores weigh as much as b's ten together: the 95 % margin is b's 3, and without b it is a's
    # worse seed, 2, not the mean of the two seeds.
    assert calibration.margin_logit == pytest.approx(3.0)
    assert bench.fit(images[images["source"] == "a"], 0.95).margin_logit == pytest.approx(2.0)
