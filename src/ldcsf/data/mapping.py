"""Mapping tables: a source data set's own classes -> the project's labels (1 / 0 / blank).

A mapping table is a CSV with a `source_class` column, one column per label and an optional
`note` column saying why. Blank means "this class does not tell whether the label is present".
Tables for public data sets ship in `ldcsf/data/mappings/` and are found by name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .manifest import _parse_label_column

_NON_LABEL_COLUMNS = ("source_class", "note")


def shipped_mappings() -> list[str]:
    """Names of the mapping tables shipped with the package (e.g. 'nct_crc_he_100k')."""
    folder = resources.files(__package__) / "mappings"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv"))


def mapping_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a shipped table."""
    path = Path(name_or_path)
    if path.suffix == ".csv" or path.exists():
        return path
    shipped = resources.files(__package__) / "mappings" / f"{name_or_path}.csv"
    if not shipped.is_file():
        raise ValueError(f"unknown mapping table {name_or_path!r} (shipped: {', '.join(shipped_mappings())}; or give a CSV path)")
    return Path(str(shipped))


def read_mapping(name_or_path: str | Path) -> pd.DataFrame:
    """Read a mapping table: index = source class, columns = labels, values 1.0 / 0.0 / NaN."""
    path = mapping_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mapping table not found")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "source_class" not in raw.columns:
        raise ValueError(f"{path}: mapping table has no 'source_class' column")
    duplicated = raw["source_class"][raw["source_class"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: source class {duplicated.iloc[0]!r} listed twice")
    labels = [c for c in raw.columns if c not in _NON_LABEL_COLUMNS]
    if not labels:
        raise ValueError(f"{path}: mapping table has no label columns")
    table = pd.DataFrame({lab: _parse_label_column(path, raw[lab], lab) for lab in labels})
    table.index = raw["source_class"].str.strip()
    table.attrs["source"] = str(path)
    return table


def apply_mapping(frame: pd.DataFrame, table: pd.DataFrame, class_col: str = "source_class") -> pd.DataFrame:
    """Add one column per label to `frame`, looked up from each row's source class."""
    unknown = sorted(set(frame[class_col]) - set(table.index))
    if unknown:
        where = table.attrs.get("source", "mapping table")
        raise ValueError(f"{where}: no row for source class(es) {', '.join(map(str, unknown))}")
    values = table.loc[frame[class_col]].to_numpy(dtype=np.float32)
    out = frame.copy()
    for i, label in enumerate(table.columns):
        out[label] = values[:, i]
    return out
