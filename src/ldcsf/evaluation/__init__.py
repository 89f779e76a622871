"""Evaluation: multi-label metrics, threshold tuning, scoring a checkpoint, predicting images."""

from .metrics import LABEL_METRICS, SUMMARY_METRICS, MetricsReport, compute_metrics, mean_average_precision
from .thresholds import apply_thresholds, tune_threshold, tune_thresholds

__all__ = [
    "LABEL_METRICS",
    "SUMMARY_METRICS",
    "MetricsReport",
    "apply_thresholds",
    "compute_metrics",
    "mean_average_precision",
    "tune_threshold",
    "tune_thresholds",
]
