"""Agreement of ldcsf's stroma percentage with pathologists' visual scores, and among the pathologists.

The reference table has a `slide_id` column and one column per rater: a stroma percentage (0-100,
the visual estimate in 10 % steps) or a category (stroma-high / stroma-low). For every pair
(ldcsf vs each rater, and each two raters) on the slides both scored:

- ICC (pingouin.intraclass_corr, Shrout & Fleiss / McGraw & Wong): headline ICC2 = two-way random
  effects, absolute agreement, single rater, with its 95 % F-interval; also ICC2k (mean of the
  raters) and ICC3 (two-way mixed, consistency, single rater);
- Spearman's rho (scipy.stats.spearmanr);
- Cohen's kappa on stroma-high (> cut-off) vs stroma-low, and linear-weighted kappa on the
  10 %-step categories, each percentage rounded to its nearest 10 % step (0, 10, ..., 100)
  (sklearn.metrics.cohen_kappa_score);
- Bland-Altman: d = first - second; bias = mean(d), limits of agreement = bias +/- 1.96 SD(d)
  (sample SD, ddof=1).
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .cohort_table import DEFAULT_CUTOFF_PCT, DEFAULT_SCORE, ID_COLUMN, match_ids, read_cohort_scores, read_csv_table, require_id_column
from .requirements import require

LDCSF = "ldcsf"
#: Fewer slides than this give intervals too wide to report (and pingouin's ICC needs several).
MIN_SLIDES = 5
STEP_PCT = 10.0
#: Our names -> pingouin's (Shrout & Fleiss before 0.7, McGraw & Wong from 0.7 on: A absolute, C consistency).
ICC_TYPES = {"icc2": ("ICC(A,1)", "ICC2"), "icc2k": ("ICC(A,k)", "ICC2k"), "icc3": ("ICC(C,1)", "ICC3")}
HIGH_WORDS = {"stroma-high", "high", "stroma high"}
LOW_WORDS = {"stroma-low", "low", "stroma low"}


def read_reference(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The raters' scores (percent as floats, categories as 1.0 high / 0.0 low) and each rater's kind."""
    table = require_id_column(read_csv_table(path, "reference table"), path, "reference table")
    raters = [c for c in table.columns if c != ID_COLUMN]
    if not raters:
        raise ValueError(f"{path}: the reference table has no rater column beside {ID_COLUMN!r}")
    out = pd.DataFrame({ID_COLUMN: table[ID_COLUMN]})
    kinds = {}
    for rater in raters:
        out[rater], kinds[rater] = _rater_values(table[rater], rater, path)
    return out, kinds


def _rater_values(column: pd.Series, rater: str, path) -> tuple[pd.Series, str]:
    words = column.str.strip().str.lower()
    given = words.dropna()
    if given.empty:
        raise ValueError(f"{path}: rater {rater!r} has no scores")
    if given.isin(HIGH_WORDS | LOW_WORDS).all():
        return words.map(lambda w: 1.0 if w in HIGH_WORDS else 0.0 if w in LOW_WORDS else np.nan), "category"
    values = pd.to_numeric(words.str.rstrip("%"), errors="coerce")
    bad = given[values[given.index].isna()]
    if not bad.empty:
        raise ValueError(f"{path}: rater {rater!r} has values that are neither a percentage nor stroma-high/"
                         f"stroma-low: {', '.join(map(repr, sorted(set(bad))[:3]))}")
    if values.min() < 0 or values.max() > 100:
        raise ValueError(f"{path}: rater {rater!r} has scores outside 0-100 % (min {values.min():g}, max {values.max():g})")
    if values.max() <= 1:
        raise ValueError(f"{path}: rater {rater!r} scores lie in 0-1 (max {values.max():g}); ldcsf works in percent: "
                         "multiply them by 100")
    return values, "percent"


def pair_agreement(first: Sequence[float], second: Sequence[float], *, cutoff_pct: float = DEFAULT_CUTOFF_PCT,
                   kinds: tuple[str, str] = ("percent", "percent")) -> dict:
    """Agreement figures of two raters on the same slides (see the module's docstring)."""
    a, b = np.asarray(first, float), np.asarray(second, float)
    both = ~(np.isnan(a) | np.isnan(b))
    a, b = a[both], b[both]
    high_a = a if kinds[0] == "category" else (a > cutoff_pct).astype(float)
    high_b = b if kinds[1] == "category" else (b > cutoff_pct).astype(float)
    out: dict = {"n": int(len(a)), "kappa_high_low": _kappa(high_a, high_b),
                 "agreement_high_low": float(np.mean(high_a == high_b)) if len(a) else None}
    if kinds != ("percent", "percent"):
        return out
    out.update(icc(a, b))
    stats = require("scipy.stats", "Spearman's rho")
    rho, p = stats.spearmanr(a, b)
    out["spearman"], out["spearman_p"] = _finite(rho), _finite(p)
    out["kappa_10pct_linear"] = _kappa(to_steps(a), to_steps(b), weights="linear",
                                       labels=list(range(int(100 / STEP_PCT) + 1)))
    out.update(bland_altman(a, b))
    return out


def icc(*ratings: Sequence[float]) -> dict:
    """ICC2 (headline), ICC2k and ICC3 with 95 % intervals for raters' scores of the same slides."""
    pingouin = require("pingouin", "the intraclass correlation")
    scores = np.column_stack([np.asarray(r, float) for r in ratings])
    long = pd.DataFrame({"slide": np.repeat(np.arange(len(scores)), scores.shape[1]),
                         "rater": np.tile(np.arange(scores.shape[1]), len(scores)), "score": scores.ravel()})
    with warnings.catch_warnings():  # identical scores: F is infinite, the interval undefined (reported as None)
        warnings.simplefilter("ignore", RuntimeWarning)
        table = pingouin.intraclass_corr(data=long, targets="slide", raters="rater", ratings="score").set_index("Type")
    interval = "CI95" if "CI95" in table.columns else "CI95%"  # pingouin >= 0.7 renamed it
    out = {}
    for key, names in ICC_TYPES.items():
        kind = next(name for name in names if name in table.index)
        low, high = table.loc[kind, interval]
        out[key], out[f"{key}_low"], out[f"{key}_high"] = _finite(table.loc[kind, "ICC"]), _finite(low), _finite(high)
    return out


def bland_altman(first: np.ndarray, second: np.ndarray) -> dict:
    """Bias and 95 % limits of agreement of first - second (sample SD)."""
    diff = np.asarray(first, float) - np.asarray(second, float)
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    return {"bias": bias, "sd_diff": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}


def to_steps(percent: np.ndarray) -> np.ndarray:
    """Nearest 10 % step as an integer 0..10 (halves go up, not to even)."""
    return np.floor(np.asarray(percent, float) / STEP_PCT + 0.5).astype(int)


def _kappa(a, b, **kwargs) -> float | None:
    if len(a) == 0:
        return None
    metrics = require("sklearn.metrics", "Cohen's kappa")
    if len(set(np.concatenate([np.asarray(a).ravel(), np.asarray(b).ravel()]))) < 2:
        return None  # one category only: kappa is undefined (0/0)
    return _finite(metrics.cohen_kappa_score(a, b, **kwargs))


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def agreement_study(cohorts: Sequence[str | Path], reference: str | Path, *, score: str = DEFAULT_SCORE,
                    cutoff_pct: float = DEFAULT_CUTOFF_PCT) -> dict:
    """Every pair's figures, the raters' joint ICC, and the scores behind them (for the figure)."""
    require("pingouin", "ldcsf agreement")
    scores = read_cohort_scores(cohorts, score)
    raters, kinds = read_reference(reference)
    merged, ids = match_ids(scores, raters, reference, "reference")
    if len(merged) < MIN_SLIDES:
        raise ValueError(f"{reference}: only {len(merged)} slide(s) match the cohort; agreement needs at least "
                         f"{MIN_SLIDES}")
    merged = merged.rename(columns={"stroma_pct": LDCSF})
    kinds = {LDCSF: "percent", **kinds}
    pairs = []
    for first, second in [(LDCSF, r) for r in kinds if r != LDCSF] + list(itertools.combinations(list(kinds)[1:], 2)):
        figures = pair_agreement(merged[first], merged[second], cutoff_pct=cutoff_pct, kinds=(kinds[first], kinds[second]))
        if figures["n"] < MIN_SLIDES:
            raise ValueError(f"{reference}: {first} and {second} both scored only {figures['n']} slide(s); "
                             f"agreement needs at least {MIN_SLIDES}")
        pairs.append({"pair": f"{first} vs {second}", "first": first, "second": second,
                      "kind": "ldcsf-vs-rater" if first == LDCSF else "inter-rater", **figures})
    percent_raters = [r for r in kinds if r != LDCSF and kinds[r] == "percent"]
    joint = None
    if len(percent_raters) >= 2:
        complete = merged[percent_raters].dropna()
        if len(complete) >= MIN_SLIDES:
            joint = {"raters": percent_raters, "n": len(complete), **icc(*(complete[r] for r in percent_raters))}
    return {
        "score": score, "cutoff_pct": cutoff_pct, "reference": str(reference),
        "cohorts": [str(c) for c in cohorts], "slides": ids, "raters": kinds, "pairs": pairs,
        "raters_icc": joint, "methods": METHODS,
        "scores": merged[[ID_COLUMN, *kinds]].to_dict(orient="list"),
    }


#: Which formula each figure uses, written into agreement.json and shown on the study page.
METHODS = {
    "icc2": "pingouin.intraclass_corr ICC2: two-way random effects, absolute agreement, single rater "
            "(Shrout & Fleiss ICC(2,1)); 95 % F-interval",
    "icc2k": "ICC2k: as ICC2, for the mean of the k raters (ICC(2,k))",
    "icc3": "ICC3: two-way mixed effects, consistency, single rater (ICC(3,1))",
    "spearman": "scipy.stats.spearmanr",
    "kappa_high_low": "sklearn cohen_kappa_score, unweighted, stroma-high (> cut-off) vs stroma-low",
    "kappa_10pct_linear": "sklearn cohen_kappa_score(weights='linear') on the nearest 10 % step (0..100)",
    "bland_altman": "d = first - second; bias = mean(d); limits = bias +/- 1.96 SD(d), ddof=1",
}
