"""The manifest: one CSV that lists every image of a data set with its multi-label target.

A manifest has a `path` column (relative to the manifest's folder, or absolute) and one column
per label holding 1 (present), 0 (absent) or blank (this source does not annotate the label; a
loss must mask it out rather than read it as 0). Optional reserved columns: `split`
(train/val/test), `group` (patient/slide id: a group never spans two splits) and `mask` (a pixel
mask). Any other column (source, fractions, ...) is carried along untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .manifest_checks import check_manifest_rows

from ..labels import default_labels as project_labels
from ..utils.atomic import atomic_path

RESERVED_COLUMNS = ("path", "split", "group", "mask")

#: The only spellings accepted in a label column (after stripping); "" = not annotated.
_LABEL_VALUES = {"1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0, "": np.nan}
_MAX_LISTED = 5


def default_labels() -> tuple[str, ...]:
    """A manifest's default label columns: the project's labels (`ldcsf.labels`)."""
    return project_labels()


@dataclass
class Manifest:
    """A parsed manifest: the table, the folder its relative paths start from, and its labels."""

    frame: pd.DataFrame
    root: Path
    labels: list[str]
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def targets(self) -> np.ndarray:
        """(N, L) float32: 1 present, 0 absent, NaN not annotated."""
        return self.frame[self.labels].to_numpy(dtype=np.float32, na_value=np.nan)

    def image_paths(self) -> list[Path]:
        return [_resolve(self.root, p) for p in self.frame["path"]]

    def splits(self) -> list[str]:
        if "split" not in self.frame.columns:
            return []
        return sorted(str(s) for s in self.frame["split"].dropna().unique())

    def subset(self, split: str) -> Manifest:
        if "split" not in self.frame.columns:
            where = self.source or self.root
            raise ValueError(f"{where}: manifest has no 'split' column (cannot select split {split!r})")
        frame = self.frame[self.frame["split"] == split].reset_index(drop=True)
        return Manifest(frame=frame, root=self.root, labels=list(self.labels), source=self.source)


def read_manifest(
    path: str | Path,
    labels: Sequence[str] | None = None,
    root: str | Path | None = None,
    check_files: bool = True,
) -> Manifest:
    """Read and validate a manifest CSV; every problem is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    # Everything is read as text first so that label cells can be validated exactly.
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    if "path" not in raw.columns:
        raise ValueError(f"{path}: manifest has no 'path' column (columns: {', '.join(raw.columns)})")
    labels = _choose_labels(path, raw, labels)
    frame = raw.copy()
    for label in labels:
        frame[label] = _parse_label_column(path, raw[label], label)
    for col in frame.columns:
        if col not in labels and col != "path":
            frame[col] = _restore_column(frame[col], numeric=col not in RESERVED_COLUMNS)
    root = Path(root) if root is not None else path.parent
    manifest = Manifest(frame=frame, root=root.resolve(), labels=list(labels), source=path)
    check_manifest_rows(path, frame, list(labels), manifest.image_paths())
    if check_files:
        missing = [p for p in manifest.image_paths() if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:_MAX_LISTED])
            raise FileNotFoundError(f"{path}: {len(missing)} image(s) not found, e.g. {shown}")
    return manifest


def write_manifest(frame_or_manifest: pd.DataFrame | Manifest, path: str | Path) -> Path:
    """Write atomically; label columns keep blanks for "not annotated" and 1/0 as integers."""
    frame = frame_or_manifest.frame if isinstance(frame_or_manifest, Manifest) else frame_or_manifest
    frame = frame.copy()
    for col in frame.columns:
        if _is_label_like(frame[col]):
            frame[col] = frame[col].astype("Int8")  # 1/0 without ".0", NaN -> blank
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def relative_paths(frame: pd.DataFrame, base: str | Path, columns: Sequence[str] = ("path", "mask")) -> pd.DataFrame:
    """Paths under `base` rewritten relative to it (so the folder can move); others stay absolute."""
    base = Path(base).resolve()
    out = frame.copy()
    for col in columns:
        if col in out.columns:
            out[col] = [_relative_or_absolute(v, base) if isinstance(v, (str, Path)) else v for v in out[col]]
    return out


def label_counts(manifest: Manifest | pd.DataFrame, labels: Sequence[str] | None = None,
                 by: str | None = None) -> pd.DataFrame:
    """Images, groups and positives/annotated per label, one row per split (per `by` x split).

    Cells read "positives/annotated", "-" where no image of the row annotates the label. A manifest
    without a `split` column counts as split "all"; a blank split as "none". With more than one
    row a last row "all" totals the whole manifest. `by` is another column to break the counts
    down by, e.g. "dataset" (the pan-cancer summary).
    """
    if isinstance(manifest, Manifest):
        frame, labels = manifest.frame, labels or manifest.labels
    else:
        frame, labels = manifest, labels or [lab for lab in default_labels() if lab in manifest.columns]
    frame = frame.assign(split=frame.get("split", "all")).fillna({"split": "none"})
    keys = [by, "split"] if by else ["split"]
    parts = [(key if isinstance(key, tuple) else (key,), part) for key, part in frame.groupby(keys, sort=True)]
    if len(parts) > 1:
        parts.append((("all",) * len(keys), frame))
    rows = []
    for key, part in parts:
        targets = part[list(labels)].to_numpy(dtype=np.float32, na_value=np.nan)
        row = dict(zip(keys, key)) | {"images": len(part)}
        if "group" in part:
            row["groups"] = part["group"].nunique()
        for i, lab in enumerate(labels):
            annotated = int(np.isfinite(targets[:, i]).sum())
            row[lab] = f"{int(np.nansum(targets[:, i]))}/{annotated}" if annotated else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def _resolve(root: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else root / p


def _relative_or_absolute(value: str | Path, base: Path) -> str:
    path = Path(value).resolve()
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)


def _choose_labels(path: Path, raw: pd.DataFrame, labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        missing = [lab for lab in labels if lab not in raw.columns]
        if missing:
            raise ValueError(f"{path}: missing label column(s) {', '.join(missing)}")
        return list(labels)
    defaults = default_labels()
    if all(lab in raw.columns for lab in defaults):
        return list(defaults)
    found = [c for c in raw.columns if c not in RESERVED_COLUMNS and raw[c].str.strip().isin(list(_LABEL_VALUES)).all()]
    if not found:
        raise ValueError(f"{path}: no label columns (need {', '.join(defaults)} or columns holding only 1/0/blank)")
    return found


def _parse_label_column(path: Path, column: pd.Series, label: str) -> pd.Series:
    cells = column.str.strip()
    bad = ~cells.isin(list(_LABEL_VALUES))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        # Row numbers as a spreadsheet shows them: header is row 1.
        raise ValueError(
            f"{path}: row {i + 2}, column {label!r}: unknown label value {column.iloc[i]!r} "
            "(use 1 present, 0 absent, blank not annotated)"
        )
    return cells.map(_LABEL_VALUES).astype("float32")


def _restore_column(column: pd.Series, numeric: bool) -> pd.Series:
    """Blank -> NaN; a column whose other cells are all numbers (fractions, offsets) -> numeric."""
    column = column.replace("", np.nan)
    if numeric:
        converted = pd.to_numeric(column, errors="coerce")
        if converted.notna().sum() == column.notna().sum():
            return converted
    return column


def _is_label_like(col: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return False
    values = col.dropna()
    return len(values) > 0 and values.isin([0, 1]).all()
