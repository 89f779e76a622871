"""The TSR of each slide from one or several cohort.csv files of `ldcsf slide`, in percent.

A cohort is given as its output folder or its cohort.csv. Only finished slides (status "ok")
with a score count; slide ids must be unique across the cohorts given.
"""

from __future__ import annotations

import logging
from io import StringIO
from pathlib import Path
from typing import Sequence

import pandas as pd

log = logging.getLogger(__name__)

#: The file `ldcsf slide` writes at the root of its output folder (ldcsf.wholeslide.cohort.COHORT_CSV;
#: repeated so that a study does not import the inference stack and torch).
COHORT_CSV = "cohort.csv"
ID_COLUMN = "slide_id"
#: --score choices -> the cohort.csv column of the stroma fraction (0-1). The clinical protocol
#: (van Pelt 2018) scores the most stroma-rich field, which the hotspot stands for.
SCORE_COLUMNS = {"hotspot": "hotspot_stroma_fraction", "whole-slide": "stroma_fraction"}
DEFAULT_SCORE = "hotspot"
#: Stroma percentage above which a tumour is stroma-high (ldcsf.analysis.tsr.STROMA_HIGH_CUTOFF, in %).
DEFAULT_CUTOFF_PCT = 50.0


def cohort_csv_path(cohort: str | Path) -> Path:
    """cohort.csv of a cohort folder, or the file itself."""
    path = Path(cohort)
    if path.is_dir():
        path = path / COHORT_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such cohort table (give the --out folder of `ldcsf slide` or its {COHORT_CSV})")
    return path


def cohort_folder(cohort: str | Path) -> Path:
    """The folder a cohort's outputs live in (where the study files go by default)."""
    return cohort_csv_path(cohort).parent


def read_csv_table(path: str | Path, what: str) -> pd.DataFrame:
    """A UTF-8 CSV as text columns; a clear line when it is missing, not text or empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); save the {what} as UTF-8 CSV") from None
    try:
        table = pd.read_csv(StringIO(text), dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a readable CSV {what} ({str(err).splitlines()[0]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        raise ValueError(f"{path}: the {what} has no rows")
    return table


def read_cohort_scores(cohorts: Sequence[str | Path], score: str = DEFAULT_SCORE) -> pd.DataFrame:
    """slide_id, stroma_pct (the chosen score, 0-100) and cohort, one row per scored slide."""
    if score not in SCORE_COLUMNS:
        raise ValueError(f"unknown score {score!r} (choose {', '.join(SCORE_COLUMNS)})")
    column = SCORE_COLUMNS[score]
    parts = []
    for cohort in cohorts:
        path = cohort_csv_path(cohort)
        table = read_csv_table(path, "cohort table")
        missing = [c for c in (ID_COLUMN, "status", column) if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: not a cohort.csv of `ldcsf slide` (no column {', '.join(missing)})")
        ok = table[table["status"].str.strip() == "ok"]
        values = pd.to_numeric(ok[column], errors="coerce")
        if values.isna().any():
            log.warning("%s: %d finished slide(s) have no %s score and are left out", path, int(values.isna().sum()), score)
        parts.append(pd.DataFrame({ID_COLUMN: ok[ID_COLUMN].str.strip(), "stroma_pct": values * 100.0,
                                   "cohort": str(path)})[values.notna()])
    scores = pd.concat(parts, ignore_index=True)
    duplicated = scores[ID_COLUMN][scores[ID_COLUMN].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"slide id {duplicated.iloc[0]!r} appears twice in the cohorts given; ids must be unique")
    if scores.empty:
        raise ValueError(f"{', '.join(map(str, cohorts))}: no finished slide with a {score} score")
    return scores


def match_ids(scores: pd.DataFrame, other: pd.DataFrame, other_path: str | Path, what: str) -> tuple[pd.DataFrame, dict]:
    """Inner join on slide_id; an error when nothing matches, else a record of the ids left over."""
    other_ids = set(other[ID_COLUMN])
    ours = set(scores[ID_COLUMN])
    merged = scores.merge(other, on=ID_COLUMN, how="inner")
    only_ours = sorted(ours - other_ids)
    only_theirs = sorted(other_ids - ours)
    if merged.empty:
        raise ValueError(f"{other_path}: none of its {len(other_ids)} slide ids matches a scored slide of the cohort "
                         f"(e.g. {sorted(other_ids)[:3]} vs {sorted(ours)[:3]})")
    if only_ours or only_theirs:
        log.warning("%s: %d slide id(s) only in the cohort (%s), %d only in the %s (%s); %d matched",
                    other_path, len(only_ours), _few(only_ours), len(only_theirs), what, _few(only_theirs), len(merged))
    return merged, {"matched": len(merged), "only_in_cohort": only_ours, f"only_in_{what.replace(' ', '_')}": only_theirs}


def require_id_column(table: pd.DataFrame, path: str | Path, what: str) -> pd.DataFrame:
    if ID_COLUMN not in table.columns:
        raise ValueError(f"{path}: the {what} has no {ID_COLUMN!r} column (columns: {', '.join(table.columns)})")
    table = table.copy()
    table[ID_COLUMN] = table[ID_COLUMN].str.strip()
    duplicated = table[ID_COLUMN][table[ID_COLUMN].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"{path}: slide id {duplicated.iloc[0]!r} appears twice in the {what}")
    return table


def _few(ids: list[str]) -> str:
    return ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "") if ids else "none"
