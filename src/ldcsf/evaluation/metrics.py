"""Multi-label metrics on probabilities, with unannotated targets (NaN) left out.

Per label, only the images that annotate that label are scored (torchmetrics' functional binary
metrics on the selected entries). Summary metrics pool the annotated entries of all labels.
A label whose annotated images hold only one class has no ROC or PR curve: its AUROC and AP are
NaN (and left out of the means), never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    binary_f1_score,
    binary_precision,
    binary_recall,
    multilabel_exact_match,
    multilabel_f1_score,
    multilabel_hamming_distance,
)

#: Target value torchmetrics is told to ignore: a blank (NaN) target, "not annotated".
_IGNORE = -1

#: Per-label columns, in the order tables and CSV files show them.
LABEL_METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "ap", "support", "annotated", "threshold")
#: Summary metrics over all labels.
SUMMARY_METRICS = ("mAP", "macro_auroc", "macro_f1", "micro_f1", "mean_accuracy", "hamming_loss", "subset_accuracy", "images")


@dataclass
class MetricsReport:
    """Per-label rows and a summary; `to_dict` gives a JSON-ready form (NaN -> None)."""

    labels: list[str]
    per_label: dict[str, dict[str, float]]
    summary: dict[str, float]
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "per_label": {lab: _json_numbers(row) for lab, row in self.per_label.items()},
            "summary": _json_numbers(self.summary),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "MetricsReport":
        """Inverse of `to_dict` (None -> NaN)."""
        def nan(row: dict) -> dict:
            return {k: math.nan if v is None else v for k, v in row.items()}

        extra = {k: v for k, v in data.items() if k not in ("labels", "per_label", "summary")}
        return cls(labels=list(data["labels"]), per_label={k: nan(v) for k, v in data["per_label"].items()},
                   summary=nan(data["summary"]), extra=extra)

    def table_rows(self) -> list[list[str]]:
        """Rows for `format_table`: one per label, formatted for reading."""
        return [[lab] + [_fmt(self.per_label[lab][m], count=m in _COUNTS) for m in LABEL_METRICS] for lab in self.labels]


def _as_tensor(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def _single_class(y: torch.Tensor) -> bool:
    return y.numel() == 0 or bool((y == y[0]).all())


def label_metrics(probs: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """Metrics of one label on the images that annotate it (NaN targets are dropped here)."""
    known = ~torch.isnan(target)
    p, y = probs[known], target[known].long()
    row = {"support": int(y.sum()), "annotated": int(y.numel()), "threshold": float(threshold)}
    if y.numel() == 0:
        return {m: math.nan for m in LABEL_METRICS} | row
    # Decisions are made here as prob >= threshold (the convention of PR/ROC curve thresholds and
    # of `apply_thresholds`); torchmetrics would threshold float inputs with a strict ">".
    decided = (p >= threshold).long()
    row |= {
        "accuracy": binary_accuracy(decided, y).item(),
        "precision": binary_precision(decided, y).item(),
        "recall": binary_recall(decided, y).item(),
        "f1": binary_f1_score(decided, y).item(),
    }
    if _single_class(y):
        row |= {"auroc": math.nan, "ap": math.nan}
    else:
        row |= {"auroc": binary_auroc(p, y).item(), "ap": binary_average_precision(p, y).item()}
    return {m: row[m] for m in LABEL_METRICS}


def compute_metrics(
    probs, targets, labels: Sequence[str], thresholds: Sequence[float] | None = None
) -> MetricsReport:
    """Score probabilities (N, L) against targets (N, L; 1, 0 or NaN = not annotated).

    Summary: mAP and macro AUROC (means over labels that have both classes), macro F1 and mean
    accuracy (means over annotated labels), micro F1, Hamming loss (wrong / annotated entries)
    and subset accuracy (images whose every annotated label is right, among images with at
    least one annotated label).
    """
    probs, targets = _as_tensor(probs), _as_tensor(targets)
    labels = list(labels)
    if probs.shape != targets.shape or probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probabilities {tuple(probs.shape)} and targets {tuple(targets.shape)} "
                         f"must both be (N, {len(labels)}) for labels {labels}")
    thresholds = [0.5] * len(labels) if thresholds is None else [float(t) for t in thresholds]
    if len(thresholds) != len(labels):
        raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")

    per_label = {lab: label_metrics(probs[:, j], targets[:, j], thresholds[j]) for j, lab in enumerate(labels)}

    # Per-label thresholds are applied here; torchmetrics then takes the 0/1 decisions as they are.
    decided = (probs >= torch.tensor(thresholds)[None, :]).long()
    known = ~torch.isnan(targets)
    truth = torch.where(known, targets, _IGNORE).long()
    pooled = dict(num_labels=len(labels), ignore_index=_IGNORE)
    # Subset accuracy is over images with at least one annotated label (torchmetrics would count an
    # image with every label blank as exactly matched).
    annotated_images = known.any(dim=1)

    def mean_of(metric: str) -> float:
        values = [row[metric] for row in per_label.values() if not math.isnan(row[metric])]
        return float(np.mean(values)) if values else math.nan

    summary = {
        "mAP": mean_of("ap"),
        "macro_auroc": mean_of("auroc"),
        "macro_f1": mean_of("f1"),
        "micro_f1": _micro_f1(decided, truth, known, pooled),
        "mean_accuracy": mean_of("accuracy"),
        "hamming_loss": multilabel_hamming_distance(decided, truth, average="micro", **pooled).item()
        if known.any() else math.nan,
        "subset_accuracy": multilabel_exact_match(decided[annotated_images], truth[annotated_images], **pooled).item()
        if annotated_images.any() else math.nan,
        "images": int(probs.shape[0]),
    }
    return MetricsReport(labels=labels, per_label=per_label, summary=summary)


def _micro_f1(decided: torch.Tensor, truth: torch.Tensor, known: torch.Tensor, pooled: dict) -> float:
    """F1 pooled over every annotated entry; NaN when no entry is positive or predicted positive."""
    if not ((decided == 1) & known).any() and not (truth == 1).any():
        return math.nan  # torchmetrics would give 0 where F1 is undefined
    return multilabel_f1_score(decided, truth, average="micro", **pooled).item()


def mean_average_precision(probs, targets) -> float:
    """mAP over labels that have both classes among annotated images (NaN if none has)."""
    probs, targets = _as_tensor(probs), _as_tensor(targets)
    aps = [label_metrics(probs[:, j], targets[:, j])["ap"] for j in range(probs.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    return float(np.mean(aps)) if aps else math.nan


_COUNTS = ("support", "annotated")


def _fmt(value: float, count: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return str(int(value)) if count else f"{value:.3f}"


def _json_numbers(row: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
