"""Survival by TSR: Kaplan-Meier by stroma-high/low, the log-rank test and Cox models (lifelines).

- Kaplan-Meier (lifelines.KaplanMeierFitter): product-limit estimate per category, with the
  median survival time and its numbers at risk.
- Log-rank (lifelines.statistics.logrank_test): chi-square (1 df) of observed vs expected events.
- Cox proportional hazards (lifelines.CoxPHFitter, Efron ties): two models, each with the
  covariates the user names: `category` (stroma_high = 1 for stroma-high, HR of high vs low) and
  `per_10pct` (stroma_per_10pct = stroma % / 10, HR per 10 % more stroma). HR = exp(coef), 95 %
  Wald interval exp(coef +/- 1.96 SE).
- Proportional-hazards check (lifelines.statistics.proportional_hazard_test, rank time
  transform, the test `check_assumptions` runs): p < 0.05 says a term's HR changes over time.
Text covariates become 0/1 columns against their first level (sorted); numbers stay numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .cohort_table import DEFAULT_CUTOFF_PCT, DEFAULT_SCORE, ID_COLUMN, match_ids, read_cohort_scores, read_csv_table, require_id_column
from .requirements import require

log = logging.getLogger(__name__)

TIME, EVENT = "time", "event"
CATEGORY_TERM, PER_10PCT_TERM = "stroma_high", "stroma_per_10pct"
HIGH, LOW = "stroma-high", "stroma-low"
MIN_EVENTS = 2
PH_ALPHA = 0.05


def read_clinical(path: str | Path, time: str, event: str, covariates: Sequence[str] = ()) -> pd.DataFrame:
    """slide_id, time, event (0/1) and the covariates; one clear line for anything wrong."""
    table = require_id_column(read_csv_table(path, "clinical table"), path, "clinical table")
    missing = [c for c in (time, event, *covariates) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(table.columns)})")
    times = pd.to_numeric(table[time], errors="coerce")
    bad = table.loc[times.isna(), ID_COLUMN]
    if not bad.empty:
        raise ValueError(f"{path}: {len(bad)} row(s) have no numeric {time!r} (e.g. slide {bad.iloc[0]!r})")
    if (times < 0).any():
        first = table.loc[times < 0, ID_COLUMN].iloc[0]
        raise ValueError(f"{path}: {int((times < 0).sum())} negative {time!r} value(s) (e.g. slide {first!r}); "
                         "times are from diagnosis or surgery and cannot be negative")
    events = pd.to_numeric(table[event], errors="coerce")
    bad_event = ~events.isin([0, 1])
    if bad_event.any():
        values = sorted(set(table.loc[bad_event, event].fillna("(empty)")))
        raise ValueError(f"{path}: {event!r} must be 0 (censored) or 1 (event); found {', '.join(map(repr, values[:3]))}")
    out = pd.DataFrame({ID_COLUMN: table[ID_COLUMN], TIME: times.astype(float), EVENT: events.astype(int)})
    for name in covariates:
        out[name] = table[name]
    return out


def encode_covariates(table: pd.DataFrame, covariates: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Numbers stay; text becomes 0/1 columns against the first level. Rows missing any are dropped."""
    columns: list[str] = []
    table = table.copy()
    blank = table[list(covariates)].apply(lambda c: c.str.strip().replace("", np.nan) if c.dtype == object else c)
    incomplete = blank.isna().any(axis=1)
    if incomplete.any():
        log.warning("%d slide(s) lack a covariate value and are left out of the Cox models", int(incomplete.sum()))
    table = table[~incomplete]
    for name in covariates:
        numbers = pd.to_numeric(table[name], errors="coerce")
        if numbers.notna().all():
            table[name] = numbers.astype(float)
            columns.append(name)
            continue
        dummies = pd.get_dummies(table[name].str.strip(), prefix=name, drop_first=True, dtype=float)
        table = pd.concat([table.drop(columns=name), dummies], axis=1)
        columns += list(dummies.columns)
    return table, columns


def logrank(high: pd.DataFrame, low: pd.DataFrame) -> dict:
    statistics = require("lifelines.statistics", "the log-rank test")
    result = statistics.logrank_test(high[TIME], low[TIME], event_observed_A=high[EVENT], event_observed_B=low[EVENT])
    return {"test": "log-rank, stroma-high vs stroma-low", "chi2": float(result.test_statistic), "df": 1,
            "p": float(result.p_value)}


def cox_model(table: pd.DataFrame, duration: str, event: str, terms: Sequence[str], *, name: str) -> dict:
    """A CoxPHFitter on `terms`: per term coef, HR with 95 % interval, p and the PH-test p."""
    lifelines = require("lifelines", "the Cox model")
    statistics = require("lifelines.statistics", "the proportional-hazards check")
    data = table[[duration, event, *terms]]
    fitter = lifelines.CoxPHFitter()
    try:
        fitter.fit(data, duration_col=duration, event_col=event)
    except Exception as err:  # lifelines' ConvergenceError & co.: say which model, in one line
        raise ValueError(f"the {name} Cox model cannot be fitted: {str(err).splitlines()[0]}") from err
    ph = statistics.proportional_hazard_test(fitter, data, time_transform="rank").summary
    summary = fitter.summary
    rows = []
    for term in terms:
        row = summary.loc[term]
        rows.append({"model": name, "term": term, "coef": float(row["coef"]), "se": float(row["se(coef)"]),
                     "hr": float(row["exp(coef)"]), "hr_low": float(row["exp(coef) lower 95%"]),
                     "hr_high": float(row["exp(coef) upper 95%"]), "p": float(row["p"]),
                     "ph_test_p": float(ph.loc[term, "p"]) if term in ph.index else None})
    return {"model": name, "n": int(len(data)), "events": int(data[event].sum()),
            "concordance": float(fitter.concordance_index_), "terms": rows,
            "ph_violations": [r["term"] for r in rows if r["ph_test_p"] is not None and r["ph_test_p"] < PH_ALPHA]}


def kaplan_meier_summary(group: pd.DataFrame) -> dict:
    lifelines = require("lifelines", "the Kaplan-Meier estimate")
    fitter = lifelines.KaplanMeierFitter().fit(group[TIME], group[EVENT])
    median = float(fitter.median_survival_time_)
    return {"n": int(len(group)), "events": int(group[EVENT].sum()),
            "median_time": median if np.isfinite(median) else None}


def survival_study(cohorts: Sequence[str | Path], clinical: str | Path, *, time: str, event: str,
                   covariates: Sequence[str] = (), score: str = DEFAULT_SCORE,
                   cutoff_pct: float = DEFAULT_CUTOFF_PCT) -> dict:
    """Kaplan-Meier, log-rank and Cox figures of the cohort joined to its clinical table."""
    require("lifelines", "ldcsf survival")
    scores = read_cohort_scores(cohorts, score)
    table, ids = match_ids(scores, read_clinical(clinical, time, event, covariates), clinical, "clinical table")
    table[CATEGORY_TERM] = (table["stroma_pct"] > cutoff_pct).astype(float)
    table[PER_10PCT_TERM] = table["stroma_pct"] / 10.0
    high, low = table[table[CATEGORY_TERM] == 1], table[table[CATEGORY_TERM] == 0]
    if high.empty or low.empty:
        which = HIGH if low.empty else LOW
        raise ValueError(f"all {len(table)} matched slides are {which} at the {cutoff_pct:g} % cut-off; "
                         "no comparison (choose another --cutoff)")
    if table[EVENT].sum() < MIN_EVENTS:
        raise ValueError(f"{clinical}: only {int(table[EVENT].sum())} event(s) among the {len(table)} matched slides; "
                         f"survival needs at least {MIN_EVENTS}")
    encoded, covariate_terms = encode_covariates(table, covariates)
    models = [cox_model(encoded, TIME, EVENT, [CATEGORY_TERM, *covariate_terms], name="category"),
              cox_model(encoded, TIME, EVENT, [PER_10PCT_TERM, *covariate_terms], name="per_10pct")]
    return {
        "score": score, "cutoff_pct": cutoff_pct, "clinical": str(clinical), "time": time, "event": event,
        "covariates": list(covariates), "cohorts": [str(c) for c in cohorts], "slides": ids,
        "kaplan_meier": {HIGH: kaplan_meier_summary(high), LOW: kaplan_meier_summary(low)},
        "logrank": logrank(high, low), "cox": models, "methods": METHODS,
        "groups": {HIGH: high[[TIME, EVENT]].to_dict(orient="list"), LOW: low[[TIME, EVENT]].to_dict(orient="list")},
    }


#: Which formula each figure uses, written into survival.json and shown on the study page.
METHODS = {
    "kaplan_meier": "lifelines KaplanMeierFitter (product-limit), 95 % exponential Greenwood bands; "
                    "numbers at risk by lifelines.plotting.add_at_risk_counts",
    "logrank": "lifelines.statistics.logrank_test, stroma-high vs stroma-low, chi-square with 1 df",
    "cox": "lifelines CoxPHFitter (Efron ties); HR = exp(coef), 95 % Wald interval exp(coef +/- 1.96 SE); "
           "stroma_high: high vs low at the cut-off; stroma_per_10pct: per 10 % more stroma",
    "ph_check": "lifelines.statistics.proportional_hazard_test(time_transform='rank') (as check_assumptions); "
                f"p < {PH_ALPHA} flags a term whose HR changes over time",
}
