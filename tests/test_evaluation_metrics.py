"""Metrics and threshold tuning against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ldcsf.evaluation.metrics import compute_metrics, mean_average_precision
from ldcsf.evaluation.thresholds import apply_thresholds, tune_threshold, tune_thresholds

NAN = np.nan
LABELS = ["a", "b", "c"]
# 5 images, 3 labels. Label c is annotated on 3 images only and has a single class there.
PROBS = np.array([
    [0.9, 0.2, 0.7],
    [0.4, 0.8, 0.1],
    [0.6, 0.1, 0.9],
    [0.1, 0.7, 0.3],
    [0.3, 0.4, 0.2],
], dtype=np.float32)
TARGETS = np.array([
    [1, 0, 1],
    [0, 1, NAN],
    [1, NAN, 1],
    [1, 1, NAN],
    [0, 0, 1],
], dtype=np.float32)


def test_per_label_metrics_skip_unannotated_entries():
    report = compute_metrics(PROBS, TARGETS, LABELS)
    a, b, c = (report.per_label[k] for k in LABELS)
    # a at 0.5: decisions 1,0,1,0,0 vs 1,0,1,1,0 -> TP 2, FN 1, TN 2.
    assert a["accuracy"] == pytest.approx(4 / 5)
    assert a["precision"] == pytest.approx(1.0)
    assert a["recall"] == pytest.approx(2 / 3)
    assert a["f1"] == pytest.approx(0.8)
    # positives 0.9, 0.6, 0.1; negatives 0.4, 0.3: 4 of 6 pairs ranked right.
    assert a["auroc"] == pytest.approx(4 / 6)
    # ranking 0.9+ 0.6+ 0.4- 0.3- 0.1+: AP = (1 + 1 + 3/5) / 3
    assert a["ap"] == pytest.approx((1 + 1 + 0.6) / 3)
    assert (a["support"], a["annotated"]) == (3, 5)
    # b: image 2 is not annotated, so only 4 entries count: all right at 0.5.
    assert b["annotated"] == 4 and b["accuracy"] == pytest.approx(1.0) and b["ap"] == pytest.approx(1.0)
    # c: three annotated images, all positive -> no ROC/PR curve: NaN, not an error.
    assert c["annotated"] == 3 and math.isnan(c["auroc"]) and math.isnan(c["ap"])
    assert c["recall"] == pytest.approx(2 / 3)


def test_summary_metrics():
    summary = compute_metrics(PROBS, TARGETS, LABELS).summary
    # mAP over labels with both classes (a, b) only.
    assert summary["mAP"] == pytest.approx(((1 + 1 + 0.6) / 3 + 1.0) / 2)
    # 12 annotated entries; wrong: a on image 3, c on image 4 -> Hamming 2/12.
    assert summary["hamming_loss"] == pytest.approx(2 / 12)
    # images 0, 1, 2 fully right; 3 (a wrong) and 4 (c wrong) not.
    assert summary["subset_accuracy"] == pytest.approx(3 / 5)
    # pooled: TP a2 + b2 + c2 = 6, FP 0, FN a1 + c1 = 2.
    assert summary["micro_f1"] == pytest.approx(12 / 14)
    assert summary["images"] == 5
    assert mean_average_precision(PROBS, TARGETS) == pytest.approx(summary["mAP"])


def test_thresholds_change_decisions():
    report = compute_metrics(PROBS, TARGETS, LABELS, thresholds=[0.1, 0.5, 0.5])
    assert report.per_label["a"]["recall"] == pytest.approx(1.0)  # prob >= threshold is positive
    assert report.per_label["a"]["threshold"] == pytest.approx(0.1)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must both be"):
        compute_metrics(PROBS[:, :2], TARGETS, LABELS)


def test_report_json_has_no_nan():
    data = compute_metrics(PROBS, TARGETS, LABELS).to_dict()
    assert data["per_label"]["c"]["auroc"] is None


def test_f1_threshold_on_toy_case():
    probs = np.array([0.1, 0.2, 0.35, 0.45, 0.5, 0.8, 0.9])
    target = np.array([0, 0, 1, 0, 1, 1, 1])
    # cutting at 0.35 catches all 4 positives with one false positive: F1 = 8/9, the best.
    assert tune_threshold(probs, target, "f1") == pytest.approx(0.35)
    # Youden: at 0.35 TPR 1, FPR 1/3 -> J 2/3; at 0.5 TPR 3/4, FPR 0 -> J 3/4 (the best).
    assert tune_threshold(probs, target, "youden") == pytest.approx(0.5)


def test_threshold_ignores_nan_and_defaults_for_one_class():
    probs = np.array([[0.2, 0.9], [0.7, 0.8], [0.9, 0.3]])
    targets = np.array([[0, 1], [1, NAN], [NAN, 1]])
    thresholds = tune_thresholds(probs, targets)
    assert thresholds[0] == pytest.approx(0.7)
    assert thresholds[1] == 0.5  # only positives annotated: nothing to tune
    assert apply_thresholds(probs, thresholds).tolist() == [[False, True], [True, True], [True, False]]


def test_unknown_threshold_method():
    with pytest.raises(ValueError, match="unknown threshold method"):
        tune_threshold([0.1, 0.9], [0, 1], "best")
