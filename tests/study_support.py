"""Generated cohorts for the study tests: a cohort.csv as `ldcsf slide` writes it, with known truths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ldcsf.export.slide_outputs import cohort_summary_columns


def write_cohort(folder: Path, stroma_pct: np.ndarray, hotspot_pct: np.ndarray | None = None) -> Path:
    """A cohort.csv of finished slides s000, s001, ... with these whole-slide (and hotspot) stroma %."""
    folder.mkdir(parents=True, exist_ok=True)
    hotspot_pct = stroma_pct if hotspot_pct is None else hotspot_pct
    ids = [f"s{i:03d}" for i in range(len(stroma_pct))]
    table = pd.DataFrame({"slide_id": ids, "path": [f"slides/{i}.svs" for i in ids], "status": "ok", "error": "",
                          "stroma_fraction": stroma_pct / 100, "hotspot_stroma_fraction": hotspot_pct / 100,
                          "category": np.where(stroma_pct > 50, "stroma-high", "stroma-low")})
    table.reindex(columns=cohort_summary_columns).to_csv(folder / "cohort.csv", index=False)
    return folder


def generated_survival(n: int, hazard_ratio: float, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Stroma % and a clinical table whose stroma-high slides (> 50 %) have hazard `hazard_ratio`.

    Exponential event times (baseline rate 0.02 per month) and uniform censoring up to 120 months;
    an age covariate with its own effect (HR 1.03 per year) that the Cox model adjusts for.
    """
    rng = np.random.default_rng(seed)
    stroma = rng.uniform(5, 95, n)
    age = rng.normal(65, 10, n)
    rate = 0.02 * np.where(stroma > 50, hazard_ratio, 1.0) * np.exp(np.log(1.03) * (age - 65))
    event_time = rng.exponential(1 / rate)
    censor = rng.uniform(12, 120, n)
    clinical = pd.DataFrame({"slide_id": [f"s{i:03d}" for i in range(n)], "months": np.minimum(event_time, censor).round(2),
                             "dead": (event_time <= censor).astype(int), "age": age.round(1),
                             "stage": rng.choice(["I", "II", "III"], n)})
    return stroma, clinical
