"""`evaluate`: score a checkpoint on a manifest split; write metrics and per-image predictions.

Writes (atomically) into the output folder:
    metrics.json      per-label metrics and the summary (mAP, macro/micro F1, Hamming loss, ...)
    metrics.csv       one row per label, then a "macro avg" row
    predictions.csv   per image: path, and per label the target, probability and decision
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..data.dataset import IndexedDataset, ManifestDataset, drop_unreadable_images
from ..data.manifest import Manifest, read_manifest
from ..data.manifest_checks import check_labels
from ..data.transforms import eval_transforms
from ..inference.dataset_prediction import predict_dataset
from ..options import PredictOptions
from ..utils.atomic import atomic_path, write_json_atomic
from .metrics import LABEL_METRICS, MetricsReport, compute_metrics
from .thresholds import apply_thresholds

#: --split value that scores every row of the manifest.
ALL_SPLITS = "all"


@dataclass
class EvaluationResult:
    report: MetricsReport
    predictions: pd.DataFrame
    out_dir: Path
    is_global_zero: bool = True


def read_manifest_for_checkpoint(data: str | Path, labels: list[str], checkpoint: str | Path) -> Manifest:
    """Read `data` with the checkpoint's labels; a manifest lacking them is one clear error."""
    columns = pd.read_csv(data, nrows=0).columns if Path(data).is_file() else None
    if columns is not None and not all(label in columns for label in labels):
        check_labels(labels, [c for c in columns if c in labels] or ["(none)"], where=str(checkpoint), data=str(data))
    return read_manifest(data, labels=labels)


def select_split(manifest: Manifest, split: str) -> Manifest:
    if split == ALL_SPLITS:
        return manifest
    if "split" not in manifest.frame.columns:
        raise ValueError(f"{manifest.source}: manifest has no 'split' column; use --split {ALL_SPLITS} to score every image")
    subset = manifest.subset(split)
    if len(subset) == 0:
        raise ValueError(f"{manifest.source}: no images in split {split!r} (splits: {', '.join(manifest.splits())})")
    return subset


def evaluate(checkpoint: str | Path | LoadedCheckpoint, data: str | Path, out_dir: str | Path, split: str = "test",
             strict: bool = False, options: PredictOptions | None = None) -> EvaluationResult:
    """Score `checkpoint` on the `split` rows of manifest `data` (thresholds from the checkpoint)."""
    options = options or PredictOptions()
    out_dir = Path(out_dir)
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    checkpoint = loaded.path
    meta = loaded.meta
    manifest = select_split(read_manifest_for_checkpoint(data, meta.labels, checkpoint), split)
    manifest = drop_unreadable_images(manifest, out_dir, strict=strict, progress=options.progress)
    transform = eval_transforms(meta.input_spec)
    predictions = predict_dataset(loaded, IndexedDataset(ManifestDataset(manifest, transform)), options)

    targets = manifest.targets()
    report = compute_metrics(predictions.probs, targets, meta.labels, meta.thresholds)
    report.extra = {"checkpoint": str(checkpoint), "data": str(data), "split": split}
    table = prediction_table(manifest, predictions.probs, meta.thresholds, targets)
    if predictions.is_global_zero:
        write_json_atomic(out_dir / "metrics.json", report.to_dict())
        with atomic_path(out_dir / "metrics.csv") as tmp:
            metrics_frame(report).to_csv(tmp, index=False)
        with atomic_path(out_dir / "predictions.csv") as tmp:
            table.to_csv(tmp, index=False)
    return EvaluationResult(report=report, predictions=table, out_dir=out_dir,
                            is_global_zero=predictions.is_global_zero)


def prediction_table(manifest: Manifest, probs: np.ndarray, thresholds, targets: np.ndarray | None = None) -> pd.DataFrame:
    """path, then per label: `<label>_true` (blank = not annotated), `<label>_prob`, `<label>_pred`."""
    frame = pd.DataFrame({"path": manifest.frame["path"].to_numpy()})
    decisions = apply_thresholds(probs, thresholds)
    for j, label in enumerate(manifest.labels):
        if targets is not None:
            frame[f"{label}_true"] = pd.array(np.where(np.isnan(targets[:, j]), np.nan, targets[:, j]), dtype="Float32").astype("Int8")
        frame[f"{label}_prob"] = np.round(probs[:, j].astype(float), 6)
        frame[f"{label}_pred"] = decisions[:, j].astype(int)
    return frame


def metrics_frame(report: MetricsReport) -> pd.DataFrame:
    """Per-label rows plus a "macro avg" row (mean over labels; support and counts summed)."""
    rows = [{"label": label, **report.per_label[label]} for label in report.labels]
    summary = report.summary
    rows.append({
        "label": "macro avg", "accuracy": summary["mean_accuracy"], "f1": summary["macro_f1"],
        "auroc": summary["macro_auroc"], "ap": summary["mAP"],
        "precision": _nanmean([report.per_label[lab]["precision"] for lab in report.labels]),
        "recall": _nanmean([report.per_label[lab]["recall"] for lab in report.labels]),
        "support": sum(report.per_label[lab]["support"] for lab in report.labels),
        "annotated": sum(report.per_label[lab]["annotated"] for lab in report.labels),
        "threshold": math.nan,
    })
    return pd.DataFrame(rows, columns=["label", *LABEL_METRICS]).astype({"support": int, "annotated": int})


def _nanmean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan
