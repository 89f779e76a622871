"""Checks of a manifest's rows: empty tables, one image listed more than once, and labels that
differ from a checkpoint's.

The same image in two splits lets the model be tested on what it was trained on (a leak), and
the same image with two different label rows teaches it both answers; both are errors. An image
listed twice with the same labels and split only weighs double: a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

log = logging.getLogger(__name__)


def check_manifest_rows(source: Path, frame: pd.DataFrame, labels: list[str], image_paths: list[Path]) -> None:
    if len(frame) == 0:
        raise ValueError(f"{source}: the manifest has no rows (a header only); list one image per row")
    keys = pd.Series([str(p) for p in image_paths], index=frame.index)
    repeated = keys[keys.duplicated(keep=False)]
    if repeated.empty:
        return
    for image, rows in frame.loc[repeated.index].groupby(repeated, sort=True):
        if "split" in rows.columns:
            splits = sorted({str(s) for s in rows["split"] if isinstance(s, str) and s})
            if len(splits) > 1:
                raise ValueError(f"{source}: {image} is listed in splits {', '.join(splits)}: "
                                 "an image in two splits leaks between training and testing")
        label_rows = rows[labels].astype("string").fillna("").drop_duplicates()
        if len(label_rows) > 1:
            raise ValueError(f"{source}: {image} is listed {len(rows)} times with different labels; keep one row")
    log.warning("%s: %d images are listed more than once with the same labels (they weigh double in training)",
                source, int(repeated.nunique()))


def check_labels(checkpoint_labels: Sequence[str], data_labels: Sequence[str], where: str, data: str = "the data") -> None:
    """One clear error when a checkpoint was trained on other labels than the data has."""
    if list(checkpoint_labels) != list(data_labels):
        raise ValueError(
            f"{where}: checkpoint labels {list(checkpoint_labels)} differ from the labels of {data} "
            f"{list(data_labels)} (same names in the same order are required)"
        )
