"""Writing a study's results into the cohort folder, each file atomically, then its HTML page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..export.spreadsheet import guarded_cell
from ..utils.atomic import atomic_path, write_json_atomic
from .files import AGREEMENT_CSV, AGREEMENT_JSON, BLAND_ALTMAN_PNG, COX_CSV, KM_PNG, LOGRANK_CSV, SURVIVAL_JSON
from .figures import bland_altman_png, kaplan_meier_png
from .report import write_study_page

AGREEMENT_COLUMNS = [
    "pair", "kind", "n", "icc2", "icc2_low", "icc2_high", "icc2k", "icc2k_low", "icc2k_high", "icc3", "icc3_low",
    "icc3_high", "spearman", "spearman_p", "kappa_high_low", "agreement_high_low", "kappa_10pct_linear", "bias",
    "sd_diff", "loa_low", "loa_high",
]


def write_csv_atomic(table: pd.DataFrame, path: Path) -> Path:
    """A table whose text cells (rater and covariate names come from the user's CSV) are formula-guarded."""
    table = table.copy()
    for column in table.columns[table.dtypes == object]:
        table[column] = table[column].map(guarded_cell)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def write_bytes_atomic(data: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_agreement(result: dict, out_dir: str | Path) -> list[Path]:
    """agreement.json, agreement.csv (one row per pair), bland_altman.png, then study.html."""
    out_dir = Path(out_dir)
    record = {k: v for k, v in result.items() if k != "scores"}
    written = [
        write_csv_atomic(pd.DataFrame(result["pairs"]).reindex(columns=AGREEMENT_COLUMNS), out_dir / AGREEMENT_CSV),
        write_bytes_atomic(bland_altman_png(result["pairs"], result["scores"]), out_dir / BLAND_ALTMAN_PNG),
    ]
    write_json_atomic(out_dir / AGREEMENT_JSON, record)  # last: its presence means the set is complete
    return [out_dir / AGREEMENT_JSON, *written, write_study_page(out_dir)]


def write_survival(result: dict, out_dir: str | Path) -> list[Path]:
    """survival.json, km.png, cox.csv (one row per model term), logrank.csv, then study.html."""
    out_dir = Path(out_dir)
    record = {k: v for k, v in result.items() if k != "groups"}
    groups = {name: (np.asarray(g["time"], float), np.asarray(g["event"], int)) for name, g in result["groups"].items()}
    title = f"{'hotspot' if result['score'] == 'hotspot' else 'whole-slide'} stroma, cut-off {result['cutoff_pct']:g} %"
    written = [
        write_bytes_atomic(kaplan_meier_png(groups, title=title, time_label=result["time"],
                                            logrank_p=result["logrank"]["p"]), out_dir / KM_PNG),
        write_csv_atomic(pd.DataFrame([row for model in result["cox"] for row in model["terms"]]), out_dir / COX_CSV),
        write_csv_atomic(pd.DataFrame([result["logrank"]]), out_dir / LOGRANK_CSV),
    ]
    write_json_atomic(out_dir / SURVIVAL_JSON, record)
    return [out_dir / SURVIVAL_JSON, *written, write_study_page(out_dir)]
