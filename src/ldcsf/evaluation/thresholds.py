"""Per-label decision thresholds tuned on validation data.

A sigmoid output of 0.5 is rarely the best cut for a label that is rare or common in the data;
each label gets its own threshold, chosen on the validation split and stored in the checkpoint.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

from ..inference.decisions import apply_thresholds  # noqa: F401 - applying thresholds is prediction's; tuned here

METHODS = ("f1", "youden")
DEFAULT_THRESHOLD = 0.5


def tune_threshold(probs, target, method: str = "f1") -> float:
    """Best threshold of one label (predict positive when prob >= threshold).

    "f1" maximises F1 on the precision-recall curve; "youden" maximises Youden's J = TPR - FPR
    on the ROC curve. Unannotated (NaN) targets are ignored; with fewer than two classes there
    is nothing to tune and 0.5 is returned.
    """
    probs = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    target = torch.as_tensor(np.asarray(target, dtype=np.float32))
    known = ~torch.isnan(target)
    p, y = probs[known], target[known].long()
    if y.numel() == 0 or bool((y == y[0]).all()):
        return DEFAULT_THRESHOLD
    if method == "f1":
        precision, recall, cuts = binary_precision_recall_curve(p, y)
        precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        score = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    elif method == "youden":
        fpr, tpr, cuts = binary_roc(p, y)
        score = tpr - fpr
        cuts = cuts.clamp(max=1.0)  # the first ROC point sits above every score
    else:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}")
    return float(cuts[int(torch.argmax(score))])


def tune_thresholds(probs, targets, method: str = "f1") -> list[float]:
    """`tune_threshold` for every label (columns of `probs` and `targets`, shape (N, L))."""
    probs, targets = np.asarray(probs, dtype=np.float32), np.asarray(targets, dtype=np.float32)
    if probs.shape != targets.shape or probs.ndim != 2:
        raise ValueError(f"probabilities {probs.shape} and targets {targets.shape} must both be (N, L)")
    return [tune_threshold(probs[:, j], targets[:, j], method) for j in range(probs.shape[1])]


