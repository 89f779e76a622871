"""Train/val/test splits that never cut a group (patient, slide, source image) in two."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..options import SPLIT_FRACTIONS

SPLIT_NAMES = ("train", "val", "test")


def assign_splits(
    frame: pd.DataFrame,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    group_col: str = "group",
    seed: int = 0,
    stratify_col: str | None = None,
    names: Sequence[str] = SPLIT_NAMES,
) -> pd.DataFrame:
    """Return a copy of `frame` with a `split` column; all rows of a group share one split.

    Groups are shuffled with `seed` and each goes to the split furthest below its target share
    of *images*. Written here rather than with scikit-learn's GroupShuffleSplit because that
    splits by number of groups (group sizes vary a lot: a slide's tiles vs. a single image)
    and fails on strata with fewer groups than splits. With `stratify_col` (e.g. the source
    data set), each stratum is split on its own so every source appears in every split it can.
    Rows without a group form a group of their own.
    """
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != len(names) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions {fractions.tolist()} must be {len(names)} non-negative numbers summing to 1")
    groups = _group_ids(frame, group_col)
    if stratify_col is not None:
        mixed = pd.Series(frame[stratify_col].to_numpy()).groupby(groups.to_numpy()).nunique()
        if (mixed > 1).any():
            raise ValueError(f"group {mixed[mixed > 1].index[0]!r} spans several values of {stratify_col!r}")
    strata = frame[stratify_col].astype(str).to_numpy() if stratify_col else np.zeros(len(frame), dtype=int)
    rng = np.random.default_rng(seed)
    split_of_group: dict[str, str] = {}
    for stratum in sorted(set(strata)):
        sizes = groups[strata == stratum].value_counts(sort=False).sort_index()
        order = rng.permutation(len(sizes))
        filled, target = np.zeros(len(names)), fractions * sizes.sum()
        for i in order:
            k = int(np.argmax(target - filled))  # the split furthest below its target
            split_of_group[sizes.index[i]] = names[k]
            filled[k] += sizes.iloc[i]
    out = frame.copy()
    out["split"] = groups.map(split_of_group).to_numpy()
    return out


def check_groups_disjoint(frame: pd.DataFrame, group_col: str = "group") -> None:
    """Raise ValueError if any group appears in more than one split."""
    groups = _group_ids(frame, group_col)
    spans = pd.Series(frame["split"].to_numpy()).groupby(groups.to_numpy()).nunique()
    if (spans > 1).any():
        raise ValueError(f"{int((spans > 1).sum())} group(s) span several splits, e.g. {spans[spans > 1].index[0]!r}")


def _group_ids(frame: pd.DataFrame, group_col: str) -> pd.Series:
    if group_col in frame.columns:
        groups = frame[group_col].astype("string").fillna("path:" + frame["path"].astype(str))
    else:
        groups = "path:" + frame["path"].astype(str)
    return pd.Series(groups.to_numpy(dtype=object), index=frame.index)
