"""`predict_images`: probabilities and decisions of every label for image files, and with a model
that estimates areas, the share of each image each label covers and its stroma fraction.

Unreadable images do not stop the run: they get a row with their error and no scores.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..analysis.tsr import ratio_and_category
from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..data.dataset import ImageFileDataset, load_rgb, picture_notes
from ..data.importers import IMAGE_SUFFIXES
from ..data.transforms import eval_transforms
from ..labels import STROMA_LABEL, TUMOR_LABEL
from ..options import PredictOptions
from ..utils.atomic import atomic_path
from .dataset_prediction import predict_dataset
from .decisions import apply_thresholds

log = logging.getLogger(__name__)

#: Below this share of the image for stroma and tumour together, an image's stroma fraction is left
#: empty: a ratio of two near-zero areas (fat, glass) says nothing. 5 % is the share at which the
#: mask sources call a label present (`ldcsf.data.masks`).
MIN_STROMA_TUMOR_SHARE = 0.05


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the image files under each folder (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    if not paths:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    return paths


def predict_images(inputs: Sequence[str | Path], checkpoint: str | Path | LoadedCheckpoint, out: str | Path | None = None,
                   options: PredictOptions | None = None) -> pd.DataFrame:
    """Score every image of `inputs`; columns: path, error, `<label>_prob`, `<label>_pred`, and for a
    model with an area head `<label>_area` and `stroma_fraction`.

    Decisions use the checkpoint's per-label thresholds. `<label>_area` is the share of the image
    the label covers by the area head (its sub-tile map averaged); `stroma_fraction` is stroma /
    (stroma + tumour) of those shares, the quantity `ldcsf slide` reports per slide, empty where the
    two together cover under `MIN_STROMA_TUMOR_SHARE` of the image. With `out`, the table is written
    as CSV (atomically, by the first process only).
    """
    options = options or PredictOptions()
    paths = collect_images(inputs)
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    meta = loaded.meta
    input_spec = meta.input_spec
    predictions = predict_dataset(loaded, ImageFileDataset(paths, eval_transforms(input_spec), input_spec.size), options)

    failed = ~predictions.extra["ok"].astype(bool)
    errors = [_read_error(p) if bad else None for p, bad in zip(paths, failed)]
    for path, bad in zip(paths, failed):
        for note in [] if bad else picture_notes(path, input_spec.size):
            log.warning(note)
    frame = pd.DataFrame({"path": [str(p) for p in paths], "error": [e or "" for e in errors]})
    decisions = apply_thresholds(predictions.probs, meta.thresholds)
    for j, label in enumerate(meta.labels):
        frame[f"{label}_prob"] = pd.array(np.where(failed, np.nan, np.round(predictions.probs[:, j].astype(float), 6)), dtype="Float64")
        frame[f"{label}_pred"] = pd.array(np.where(failed, np.nan, decisions[:, j]), dtype="Float64").astype("Int8")
    if "areas" in predictions.extra:
        _add_area_columns(frame, predictions.extra["areas"], list(meta.labels), failed)
    if out is not None and predictions.is_global_zero:
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
    return frame


def _add_area_columns(frame: pd.DataFrame, area_maps: np.ndarray, labels: list[str], failed: np.ndarray) -> None:
    """`<label>_area` per label from (N, labels, h, w) area maps, and `stroma_fraction` when both
    stroma and tumour are labels."""
    shares = area_maps.reshape(len(area_maps), len(labels), -1).mean(-1).astype(float)
    shares[failed] = np.nan
    for j, label in enumerate(labels):
        frame[f"{label}_area"] = pd.array(np.round(shares[:, j], 6), dtype="Float64")
    if {STROMA_LABEL, TUMOR_LABEL} <= set(labels):
        s, t = shares[:, labels.index(STROMA_LABEL)], shares[:, labels.index(TUMOR_LABEL)]
        # The slide's definition, image by image; empty where the image failed or holds too little of either.
        fractions = [np.nan if bad or a + b < MIN_STROMA_TUMOR_SHARE else ratio_and_category(a, b)[0]
                     for a, b, bad in zip(s, t, failed)]
        frame["stroma_fraction"] = pd.array(np.round(np.array(fractions, dtype=float), 6), dtype="Float64")


def _read_error(path: Path) -> str | None:
    # The loader workers only report that a file failed; its message is read here again.
    try:
        load_rgb(path)
    except (ValueError, FileNotFoundError) as err:
        return str(err)
    return None
