"""A 95 % interval for a stroma fraction: a spatial block bootstrap over tiles, widened by the
spread of ensemble members where there are several.

Why blocks: neighbouring tiles look alike (a stroma band spans many tiles), so resampling single
tiles would treat them as independent and give too narrow an interval. The tile grid is cut into
blocks of `BLOCK_TILES` x `BLOCK_TILES` tiles; each resample draws as many blocks as there are,
with replacement, and recomputes stroma / (stroma + tumour) from the drawn blocks' areas (the
same per-tile areas as the point estimate). The 2.5th and 97.5th percentiles of `RESAMPLES`
resamples (fixed seed: a rerun gives the same interval) are the sampling interval.

What it covers: how much the estimate depends on which parts of this section happened to be
tiled. What it does not: the model's systematic error (a tissue it misreads everywhere moves
every block alike), the choice of the hotspot (its interval resamples the chosen field's tiles
only, not the search). Ensemble members' disagreement stands in for the model's part where a
checkpoint holds several: each side of the interval is widened, in quadrature, by 1.96 times the
members' standard deviation.

The model's systematic error is added where the checkpoint carries a margin calibrated on held-out
sources (`interval_calibration`): each side is widened again, in quadrature on the calibration's scale
(the rule is in that module's docstring), and `method` names the margin and its sources. Without
one, a single model's interval says "sampling only".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..labels import STROMA_LABEL, TUMOR_LABEL
from .interval_calibration import IntervalCalibration, widen
from .tile_table import label_area_mm2
from .tsr import STROMA_HIGH_CUTOFF

BLOCK_TILES = 4
RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
Z_95 = 1.959964  # normal quantile of the ensemble widening
RESAMPLE_CHUNK_DRAWS = 1_000_000  # block draws held in memory at once


@dataclass(frozen=True)
class FractionInterval:
    """A stroma fraction's interval, how it was made, and whether it straddles the cut-off."""

    low: float
    high: float
    method: str
    near_cutoff: bool

    def to_dict(self) -> dict:
        """The tsr.json fields (shared by the slide and the hotspot)."""
        return {"stroma_fraction_interval": [self.low, self.high], "interval_method": self.method,
                "near_cutoff": self.near_cutoff}


def straddles(low: float, high: float, cutoff: float = STROMA_HIGH_CUTOFF) -> bool:
    """True when the interval holds values on both sides of the stroma-high cut-off (> cutoff is high)."""
    return low <= cutoff < high


def block_ids(rows: np.ndarray, cols: np.ndarray, block_tiles: int = BLOCK_TILES) -> np.ndarray:
    """One integer per tile naming its block of `block_tiles` x `block_tiles` grid cells."""
    if block_tiles < 1:
        raise ValueError(f"a block must be at least 1 tile wide, got {block_tiles}")
    keys = np.stack([np.asarray(rows) // block_tiles, np.asarray(cols) // block_tiles], axis=1)
    return np.unique(keys, axis=0, return_inverse=True)[1].ravel()


def bootstrap_fractions(stroma: np.ndarray, tumor: np.ndarray, blocks: np.ndarray, resamples: int = RESAMPLES,
                        seed: int = SEED) -> np.ndarray:
    """Stroma fraction of each block-bootstrap resample (NaN where a resample has neither)."""
    stroma_sums = np.bincount(blocks, weights=stroma)
    tumor_sums = np.bincount(blocks, weights=tumor)
    n = len(stroma_sums)
    rng = np.random.default_rng(seed)
    s, t = np.empty(resamples), np.empty(resamples)
    # Resamples in chunks, so a slide of 100,000 tiles (6,000 blocks) needs ~10 MB, not ~100 MB.
    chunk = max(1, RESAMPLE_CHUNK_DRAWS // n)
    for start in range(0, resamples, chunk):
        drawn = rng.integers(0, n, size=(min(chunk, resamples - start), n))  # n blocks with replacement
        s[start:start + len(drawn)] = stroma_sums[drawn].sum(axis=1)
        t[start:start + len(drawn)] = tumor_sums[drawn].sum(axis=1)
    return np.divide(s, s + t, out=np.full(resamples, np.nan), where=(s + t) > 0)


def stroma_fraction_interval(
    tiles: pd.DataFrame,
    *,
    stroma_label: str = STROMA_LABEL,
    tumor_label: str = TUMOR_LABEL,
    weighting: str = "probability",
    block_tiles: int = BLOCK_TILES,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    member_fractions: Sequence[float] | None = None,
    calibration: IntervalCalibration | None = None,
) -> FractionInterval | None:
    """The 95 % interval of the tiles' stroma fraction, or None when they hold neither stroma nor tumour.

    `member_fractions`: the same fraction as each ensemble member sees it (two or more widen the
    interval by their spread; None or one member: sampling only).
    """
    stroma = label_area_mm2(tiles, stroma_label, weighting).astype(float)
    tumor = label_area_mm2(tiles, tumor_label, weighting).astype(float)
    total = stroma.sum() + tumor.sum()
    if total <= 0:
        return None
    point = stroma.sum() / total
    blocks = block_ids(tiles["row"].to_numpy(), tiles["col"].to_numpy(), block_tiles)
    draws = bootstrap_fractions(stroma, tumor, blocks, resamples, seed)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    # A skewed ratio can leave its own estimate just outside the percentiles: keep it inside.
    low, high = min(low, point), max(high, point)
    n_blocks = int(blocks.max()) + 1
    method = (f"spatial block bootstrap: {n_blocks} blocks of {block_tiles}x{block_tiles} tiles, "
              f"{resamples} resamples, seed {seed}, {LEVEL:.0%} percentile interval")
    members = np.asarray(member_fractions if member_fractions is not None else [], dtype=float)
    members = members[np.isfinite(members)]
    if len(members) >= 2:
        spread = Z_95 * float(np.std(members, ddof=1))
        low = point - float(np.hypot(point - low, spread))
        high = point + float(np.hypot(high - point, spread))
        method += f", widened by the spread of {len(members)} ensemble members"
    low, high = float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))
    if calibration is not None:
        low, high = widen(point, low, high, calibration)
        method += f", {calibration.describe()}"
    elif len(members) < 2:
        method += ", sampling only (no model-error margin in the checkpoint)"
    return FractionInterval(low=low, high=high, method=method, near_cutoff=straddles(low, high))
