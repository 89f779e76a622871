"""Importers from common data set layouts to manifest tables (absolute paths, one row per image).

- class folders: one folder per source class, mapped to labels by a mapping table;
- labels in file names: `...-[1, 0, 1].png` with the label order given by the user.
Mask-derived tiles live in `masks.py`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .manifest import default_labels
from .mapping import apply_mapping, read_mapping

log = logging.getLogger(__name__)

#: File endings read as images wherever a folder is searched for them (importers, `ldcsf predict`).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: `[1, 0, 1]` anywhere in a file name.
FILENAME_LABELS_PATTERN = r"\[([0-9.,\s]*)\]"


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def derive_groups(paths: Iterable[Path], pattern: str | None, prefix: str = "") -> list[str]:
    """Group id per image from a regex searched in its file name.

    The regex's named group `group`, else its first group, else the whole match is the id. Files
    the regex does not match (or every file when `pattern` is None) form a group of their own.
    """
    paths = list(paths)
    if pattern is None:
        return [prefix + p.stem for p in paths]
    regex = re.compile(pattern)
    groups, unmatched = [], 0
    for p in paths:
        match = regex.search(p.name)
        if match is None:
            unmatched += 1
            groups.append(prefix + p.stem)
            continue
        if "group" in regex.groupindex:
            value = match.group("group")
        else:
            value = match.group(1) if regex.groups else match.group(0)
        groups.append(prefix + value)
    if unmatched:
        log.warning("group pattern %r matched no group in %d of %d file names: each forms its own group",
                    pattern, unmatched, len(paths))
    return groups


def import_class_folders(
    root: str | Path,
    mapping: str | Path | pd.DataFrame,
    group_pattern: str | None = None,
    dataset: str | None = None,
) -> pd.DataFrame:
    """One row per image in `root/<source class>/...`, labels from the mapping table.

    Every class folder must have a row in the mapping table (a folder without one is an error,
    not silently dropped); table rows without a folder are only logged.
    """
    root = Path(root)
    table = mapping if isinstance(mapping, pd.DataFrame) else read_mapping(mapping)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root}: no class folders found")
    unknown = [d.name for d in class_dirs if d.name not in table.index]
    if unknown:
        where = table.attrs.get("source", "mapping table")
        raise ValueError(f"{root}: class folder(s) {', '.join(unknown)} have no row in {where}")
    missing = sorted(set(table.index) - {d.name for d in class_dirs})
    if missing:
        log.info("%s: no folder for mapped class(es) %s", root, ", ".join(missing))
    rows = [(p, d.name) for d in class_dirs for p in list_images(d)]
    if not rows:
        raise ValueError(f"{root}: class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    paths = [p for p, _ in rows]
    frame = pd.DataFrame({"path": [str(p.resolve()) for p in paths], "source_class": [c for _, c in rows]})
    if dataset is not None:
        frame.insert(1, "dataset", dataset)
    frame = apply_mapping(frame, table)
    frame["group"] = derive_groups(paths, group_pattern)
    return frame


def parse_filename_labels(name: str, n_labels: int, pattern: str = FILENAME_LABELS_PATTERN) -> list[float]:
    """`'x-[1, 0, 1].png'` -> [1.0, 0.0, 1.0]; a missing or malformed list is a ValueError."""
    match = re.search(pattern, name)
    if match is None:
        raise ValueError(f"{name}: no label list like [1, 0, 1] in the file name")
    cells = [c.strip() for c in match.group(1).split(",") if c.strip()]
    if len(cells) != n_labels:
        raise ValueError(f"{name}: {len(cells)} label value(s) in the file name, expected {n_labels}")
    values = []
    for cell in cells:
        if cell not in ("0", "1", "0.0", "1.0"):
            raise ValueError(f"{name}: label value {cell!r} in the file name is not 0 or 1")
        values.append(float(cell))
    return values


def import_filename_labels(
    folder: str | Path,
    label_order: Sequence[str],
    labels: Sequence[str] | None = None,
    group_pattern: str | None = None,
    dataset: str | None = None,
) -> pd.DataFrame:
    """One row per image whose name carries `[a, b, c]` labels in `label_order`.

    `labels` lists the manifest's label columns (default: the project's four labels plus any
    in `label_order`); those not in `label_order` are left blank (not annotated).
    """
    label_order = list(label_order)
    if len(set(label_order)) != len(label_order):
        raise ValueError(f"label order {label_order} names a label twice")
    labels = list(labels) if labels is not None else list(default_labels())
    labels += [lab for lab in label_order if lab not in labels]
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"{folder}: no images found")
    values = np.array([parse_filename_labels(p.name, len(label_order)) for p in paths], dtype=np.float32)
    frame = pd.DataFrame({"path": [str(p.resolve()) for p in paths]})
    if dataset is not None:
        frame["dataset"] = dataset
    for label in labels:
        frame[label] = values[:, label_order.index(label)] if label in label_order else np.float32(np.nan)
    frame["group"] = derive_groups(paths, group_pattern)
    return frame
