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
CALIBRATION = {"margin": 0.2, "scale": "fraction", "level": 0.95,
               "sources": {"glas": {"images": 91}, "wsss4luad_masks": {"images": 26}}, "fitted_by": "test"}


# -- the combination rule: known inputs, known interval ---------------------------------------------
def test_the_margin_adds_in_quadrature_on_the_fraction_scale():
    tenth = IntervalCalibration(margin=0.1)
    assert tenth.scale == "fraction"  # what new calibrations use
    # No sampling width: the margin alone; sampling 0.4..0.6 adds in quadrature, each side its own.
    assert widen(0.5, 0.5, 0.5, tenth) == pytest.approx((0.4, 0.6))
    side = math.hypot(0.1, 0.1)
    assert widen(0.5, 0.4, 0.6, tenth) == pytest.approx((0.5 - side, 0.5 + side))
    assert widen(0.3, 0.25, 0.5, tenth) == pytest.approx((0.3 - math.hypot(0.05, 0.1), 0.3 + math.hypot(0.2, 0.1)))
    # The ends stay within [0, 1]; no margin leaves the sampling interval as it is.
    assert widen(0.05, 0.02, 0.08, IntervalCalibration(margin=0.3)) == pytest.approx((0.0, 0.05 + math.hypot(0.03, 0.3)))
    assert widen(0.95, 0.9, 0.99, IntervalCalibration(margin=0.3))[1] == 1.0
    assert widen(0.3, 0.25, 0.35, IntervalCalibration(margin=0.0)) == pytest.approx((0.25, 0.35))


def test_the_margin_adds_in_quadrature_on_the_logit_scale():
    one = IntervalCalibration(margin=1.0, scale="logit")
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
    assert widen(0.3, 0.25, 0.35, IntervalCalibration(margin=0.0, scale="logit")) == pytest.approx((0.25, 0.35))
    assert widen(0.03, 0.02, 0.05, IntervalCalibration(margin=2.0, scale="logit"))[0] == 0.0
    assert widen(0.97, 0.95, 0.98, IntervalCalibration(margin=2.0, scale="logit"))[1] == 1.0


@pytest.mark.parametrize("scale", ["fraction", "logit"])
def test_a_score_is_the_least_margin_that_covers(scale):
    rng = np.random.default_rng(0)
    point = rng.uniform(0.05, 0.95, 200)
    low, high = point - rng.uniform(0, 0.05, 200), point + rng.uniform(0, 0.05, 200)
    true = np.clip(point + rng.normal(0, 0.2, 200), 0, 1)
    scores = conformity_scores(true, point, low, high, scale)
    large = 0.5 if scale == "logit" else 0.1
    assert (scores == 0).sum() > 10 and (scores > large).sum() > 50  # both kinds of image are tested

    def covers(i: int, margin: float) -> bool:
        a, b = widen(point[i], low[i], high[i], IntervalCalibration(margin=margin, scale=scale))
        return a <= true[i] <= b

    for i, score in enumerate(scores):
        assert covers(i, score + 1e-6)
        assert score == 0 or not covers(i, max(score - 1e-4, 0.0))  # 0: sampling alone covers it


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
    ({"level": 0.95}, "has no margin"),
    ({"margin": -0.1}, "margin must be a number in [0, 1.00] on the fraction scale"),
    ({"margin": 1.5}, "margin must be a number in [0, 1.00] on the fraction scale"),
    ({"margin": 12.0, "scale": "logit"}, "margin must be a number in [0, 9.19] on the logit scale"),
    ({"margin_logit": -1.0}, "margin must be a number in [0, 9.19] on the logit scale"),
    ({"margin": float("nan")}, "margin must be a number"),
    ({"margin": 0.2, "scale": "probit"}, "scale must be one of ['fraction', 'logit']"),
    ({"margin_logit": 1.0, "scale": "fraction"}, "has margin_logit (the logit scale's old name) beside"),
    ({"margin": 0.2, "level": 1.5}, "level must be a coverage in [0.5, 1)"),
    ({"margin": 0.2, "method": "bonferroni"}, "method must be"),
    ({"margin": 0.2, "method": "split-conformal, logit residual beyond sampling"}, "method must be"),
    ({"margin": 0.2, "sources": ["glas"]}, "sources must map"),
    ({"margin": 0.2, "sources": {"glas": {"images": "many"}}}, "sources' images must be counts"),
    ({"margin": 0.2, "shift": 2}, "has unknown keys ['shift']"),
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
    assert interval_calibration_from_dict(loaded.meta.interval_calibration) == IntervalCalibration(
        margin=0.2, sources=CALIBRATION["sources"], fitted_by="test")
    old = CheckpointMeta.from_dict({k: v for k, v in meta.to_dict().items() if k != "interval_calibration"})
    assert old.interval_calibration is None  # checkpoints written before the field: sampling only


def test_a_calibration_written_before_scales_reads_as_the_logit_rule(tmp_path):
    """Checkpoints calibrated before 2026-12-07 carry `margin_logit` and the logit method: same intervals as then."""
    written = {"margin_logit": 1.65, "level": 0.95, "method": "split-conformal, logit residual beyond sampling",
               "clip": 0.01, "sources": CALIBRATION["sources"], "fitted_by": "earlier"}
    model = create_model("ldcsf_swin_micro")
    meta = CheckpointMeta.for_model(model)
    meta.interval_calibration = written
    calibration = interval_calibration_from_dict(load_checkpoint(save_checkpoint(tmp_path / "old.pt", model, meta))
                                                 .meta.interval_calibration)
    assert calibration.scale == "logit" and calibration.margin == 1.65
    side = math.hypot(math.log(1.5), 1.65)
    assert widen(0.5, 0.4, 0.6, calibration) == pytest.approx((expit(-side), expit(side)))
    assert "margin of 1.65 logits (split-conformal, logit residual" in calibration.describe()


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
    expected = widen(plain["tsr"]["stroma_fraction"], low, high, IntervalCalibration(margin=0.2))
    assert calibrated["tsr"]["stroma_fraction_interval"] == pytest.approx(list(expected))
    c_low, c_high = expected
    assert c_low < low and c_high > high and c_high - c_low > 0.3  # a margin of 0.2 on each side is wide
    method = calibrated["tsr"]["interval_method"]
    assert "sampling only" not in method and "model-error margin of 0.20 of the stroma fraction" in method
    assert "split-conformal, fraction residual beyond sampling" in method
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
    calibrated = analyse_slide(tiles, **args, interval_calibration=IntervalCalibration(margin=0.2))
    assert plain.hotspot is not None and calibrated.hotspot.tile_ids == plain.hotspot.tile_ids
    for mine, theirs, point in ((calibrated.hotspot_interval, plain.hotspot_interval, plain.hotspot.stroma_fraction),
                                (calibrated.stroma_interval, plain.stroma_interval, plain.tsr.stroma_fraction)):
        expected = widen(point, theirs.low, theirs.high, IntervalCalibration(margin=0.2))
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
    per_source, pooled = bench.cross_source(images, 0.95, "logit")
    assert per_source["a"]["margin"] == pytest.approx(3.0) and per_source["a"]["coverage"] == 1.0
    assert per_source["b"]["margin"] == pytest.approx(1.0) and per_source["b"]["coverage"] == 0.0
    assert bench.summary(pooled)["coverage"] == 0.5 and per_source["a"]["sampling_coverage"] == 0.0
    # Fitted on both, each source weighing half: the 95 % margin is b's.
    assert bench.fit(images, 0.95, "logit").margin == pytest.approx(3.0)


def test_the_scale_on_which_errors_are_alike_transfers_across_sources():
    """Both sources miss by 0.125 of the fraction, one around 0.5, the other around 0.75: on the fraction
    scale the margin of one holds the other; on the logit scale the second's errors look larger."""
    bench = _import("benchmarks", "interval_calibration")
    point = np.concatenate([np.full(10, 0.5), np.full(10, 0.75)])  # values exact in binary: no rounding at the ends
    true = point + np.tile([-0.125, 0.125], 10)
    images = pd.DataFrame({"source": ["a"] * 10 + ["b"] * 10, "image": [f"i{k}" for k in range(20)], "true": true,
                           "pred": point, "low": point, "high": point})
    table = bench.scale_comparison(images, 0.95)
    fraction, logit_scale = table["fraction"], table["logit"]
    assert fraction["margin"] == 0.125
    assert all(r["coverage"] == 1.0 for r in fraction["cross_source"].values())
    assert logit_scale["cross_source"]["b"]["coverage"] == 0.0  # a's 0.51 logits: short of b's 0.59 below, 0.85 above
    assert fraction["pooled"]["coverage"] == 1.0 and logit_scale["pooled"]["coverage"] < 1.0


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
    card["meta"]["interval_calibration"]["margin"] = "wide"
    (folder / f"{SHIPPED_NAME}.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"\.json: checkpoint meta 'interval_calibration' margin must be"):
        load_shipped(folder)


def test_coverage_is_told_apart_by_band_of_the_fraction():
    bench = _import("benchmarks", "interval_calibration")
    scored = pd.DataFrame({"true": [0.1, 0.2, 0.5, 0.9, 0.95, 1.0], "pred": [0.1, 0.3, 0.5, 0.5, 0.9, 0.7],
                           "covered": [True, True, True, False, True, False],
                           "cal_low": [0.0, 0.1, 0.3, 0.3, 0.7, 0.5], "cal_high": [0.3, 0.5, 0.7, 0.7, 1.0, 0.9]})
    by_true = bench.coverage_by_band(scored, "true")
    assert list(by_true) == ["0.00-0.33", "0.33-0.67", "0.67-1.00"]
    assert by_true["0.67-1.00"] == {"images": 3, "coverage": pytest.approx(1 / 3), "mean_width": pytest.approx(1.1 / 3)}
    assert by_true["0.00-0.33"]["coverage"] == 1.0 and by_true["0.00-0.33"]["images"] == 2
    by_pred = bench.coverage_by_band(scored, "pred")  # the two 0.5s fall in the middle band, 0.7 above it
    assert by_pred["0.33-0.67"]["images"] == 2 and by_pred["0.33-0.67"]["coverage"] == 0.5
    assert by_pred["0.67-1.00"]["images"] == 2 and by_pred["0.67-1.00"]["coverage"] == 0.5


def test_seeds_pool_into_one_margin_and_each_image_counts_once():
    bench = _import("benchmarks", "interval_calibration")
    # Source a scored by two seeds' folds (off by 1 and by 2 logits), source b by one (off by 3).
    point = np.full(30, 0.5)
    true = np.concatenate([expit(np.tile([-1.0, 1.0], 5)), expit(np.tile([-2.0, 2.0], 5)), expit(np.tile([-3.0, 3.0], 5))])
    images = pd.DataFrame({"source": ["a"] * 20 + ["b"] * 10, "image": [f"i{k % 10}" for k in range(20)] +
                           [f"j{k}" for k in range(10)], "true": true, "pred": point, "low": point, "high": point})
    folds = {"a": [{"fold": "seed0/a"}, {"fold": "seed1/a"}], "b": [{"fold": "seed0/b"}]}
    calibration = bench.fit(images, 0.95, "logit", folds=folds)
    assert calibration.sources["a"] == {"images": 10, "scores": 20, "folds": folds["a"]}
    assert calibration.sources["b"] == {"images": 10, "fold": "seed0/b"}
    # a's twenty scores weigh as much as b's ten together: the 95 % margin is b's 3, and without b it is a's
    # worse seed, 2, not the mean of the two seeds.
    assert calibration.margin == pytest.approx(3.0)
    assert bench.fit(images[images["source"] == "a"], 0.95, "logit").margin == pytest.approx(2.0)
