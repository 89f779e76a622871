"""Tumour-to-stroma ratio (TSR) of a whole slide from its tile table.

Definitions (see docs/tsr.md for the literature):
- stroma area, tumour area: tissue area (mm²) attributed to each label, either weighted by the
  predicted probability (default), counted where the thresholded decision is 1, or estimated
  from the sub-tile area map of a model with an area head ("estimated_area");
- stroma fraction = stroma / (stroma + tumour): the "stroma percentage" pathologists score;
- tsr = tumour / stroma;
- category: "stroma-high" when the stroma fraction is above 50 % (Mesker 2007 / van Pelt 2018
  cut-off), "stroma-low" otherwise, "undetermined" when there is neither stroma nor tumour.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import pandas as pd

from ..labels import STROMA_LABEL, TUMOR_LABEL
from .tile_table import check_weighting, label_area_mm2, require_labels, validate_tile_table

#: Stroma fraction above which a tumour is "stroma-high" (the 50 % cut-off of Mesker et al.).
STROMA_HIGH_CUTOFF = 0.5

CATEGORY_HIGH = "stroma-high"
CATEGORY_LOW = "stroma-low"
CATEGORY_UNDETERMINED = "undetermined"
#: Fewer tissue tiles than this give a ratio, but not one to act on: one tile is one field of view,
#: not a slide (`--limit-tiles 1` is a quick look). The slide's numbers say so (`reliable`).
MIN_RELIABLE_TILES = 10


def ratio_and_category(stroma_area: float, tumor_area: float) -> tuple[float | None, float | None, str, str]:
    """(stroma_fraction, tsr, category, note) for two areas; shared by slide and hotspot.

    tsr is math.inf when there is tumour but no stroma and None when there is neither;
    `note` says why in words ("" when both numbers are defined).
    """
    total = stroma_area + tumor_area
    if total <= 0:
        return None, None, CATEGORY_UNDETERMINED, "no stroma and no tumour"
    fraction = stroma_area / total
    category = CATEGORY_HIGH if fraction > STROMA_HIGH_CUTOFF else CATEGORY_LOW
    if stroma_area <= 0:
        return fraction, math.inf, category, "no stroma: tumour/stroma is infinite"
    return fraction, tumor_area / stroma_area, category, ""


def finite_or_none(value: float | None) -> float | None:
    """JSON and CSV have no infinity: write None instead and say why elsewhere."""
    return value if value is not None and math.isfinite(value) else None


@dataclass
class TSRResult:
    """Slide-level tumour-to-stroma numbers; `to_dict()` gives JSON-safe values."""

    weighting: str
    stroma_label: str
    tumor_label: str
    stroma_area_mm2: float
    tumor_area_mm2: float
    stroma_fraction: float | None
    tsr: float | None
    category: str
    note: str
    tissue_area_mm2: float
    n_tiles: int
    #: tiles predicted positive (pred == 1) per label; a multi-label tile counts for each
    n_tiles_by_label: dict[str, int] = field(default_factory=dict)
    #: tissue area (mm²) per label under `weighting`
    area_mm2_by_label: dict[str, float] = field(default_factory=dict)

    @property
    def reliable(self) -> bool:
        """Whether enough tissue tiles were predicted for the ratio to stand for the slide."""
        return self.n_tiles >= MIN_RELIABLE_TILES

    @property
    def reliability_note(self) -> str:
        if self.reliable:
            return ""
        return (f"unreliable: from {self.n_tiles} tissue tile{'s' if self.n_tiles != 1 else ''}, fewer than "
                f"{MIN_RELIABLE_TILES}; the ratio and category may not stand for the slide")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["tsr"] = finite_or_none(self.tsr)
        out["reliable"], out["reliability_note"] = self.reliable, self.reliability_note
        return out


def compute_tsr(
    tiles: pd.DataFrame,
    labels: Sequence[str] | None = None,
    *,
    stroma_label: str = STROMA_LABEL,
    tumor_label: str = TUMOR_LABEL,
    weighting: str = "probability",
) -> TSRResult:
    """Compute the slide's stroma and tumour areas, stroma fraction, TSR and category.

    Args:
        tiles: the tile table (see `ldcsf.analysis.tile_table`).
        labels: the labels of the table; inferred from its prob_<label> columns when None.
        stroma_label, tumor_label: which labels are stroma and tumour.
        weighting: "probability" (area × probability, the default) or "decision"
            (area where pred == 1), or "estimated_area" (the estimated area_<label> fractions of a
            model with an area head; `tile_table.default_weighting` picks it when present).
    """
    check_weighting(weighting)
    labels = validate_tile_table(tiles, labels)
    require_labels(labels, stroma_label, tumor_label)
    area_by_label = {name: float(label_area_mm2(tiles, name, weighting).sum()) for name in labels}
    stroma, tumor = area_by_label[stroma_label], area_by_label[tumor_label]
    fraction, tsr, category, note = ratio_and_category(stroma, tumor)
    return TSRResult(
        weighting=weighting,
        stroma_label=stroma_label,
        tumor_label=tumor_label,
        stroma_area_mm2=stroma,
        tumor_area_mm2=tumor,
        stroma_fraction=fraction,
        tsr=tsr,
        category=category,
        note=note,
        tissue_area_mm2=float(tiles["tissue_area_mm2"].sum()),
        n_tiles=int(len(tiles)),
        n_tiles_by_label={name: int((tiles[f"pred_{name}"] == 1).sum()) for name in labels},
        area_mm2_by_label=area_by_label,
    )
