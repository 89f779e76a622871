"""The analyse step of a slide run: every number reported for one slide, from its tile table.

    analysis = analyse_slide(tiles, labels, thresholds, mpp=0.5, dimensions=(46000, 32914))
    analysis.tsr.stroma_fraction, analysis.hotspot, analysis.label_summary
    analysis.stroma_interval, analysis.hotspot_interval   # 95 % intervals (analysis.uncertainty)

The result is all `ldcsf.export.slide_outputs` needs besides the slide's name and thumbnail:
the writer draws and records it, and computes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..labels import STROMA_LABEL, TUMOR_LABEL
from .hotspot import DEFAULT_FIELD_DIAMETER_UM, DEFAULT_MIN_TISSUE_COVERAGE, Hotspot, HotspotSearch, search_hotspot
from .tile_table import default_weighting, label_area_mm2, validate_tile_table
from .tsr import TSRResult, compute_tsr
from .interval_calibration import IntervalCalibration
from .uncertainty import FractionInterval, stroma_fraction_interval


@dataclass(frozen=True)
class SlideAnalysis:
    """A slide's tile table and what was computed from it."""

    tiles: pd.DataFrame
    labels: list[str]
    thresholds: list[float]
    mpp: float  # µm per level-0 pixel
    dimensions: tuple[int, int]  # level-0 (width, height): the hotspot field must lie on the slide
    tsr: TSRResult
    hotspot_search: HotspotSearch
    field_diameter_um: float
    min_tissue_coverage: float
    label_summary: list[dict]  # per label: threshold, positive tiles, areas, mean probability
    area_maps: np.ndarray | None = None  # (tiles, labels, h, w) sub-tile area fractions of the own cells
    stroma_interval: FractionInterval | None = None  # None: no stroma and no tumour
    hotspot_interval: FractionInterval | None = None  # None: no hotspot
    member_fractions: list[float] | None = None  # an ensemble's members' slide stroma fractions
    hotspot_member_fractions: list[float] | None = None  # ... and their hotspot fractions

    @property
    def hotspot(self) -> Hotspot | None:
        return self.hotspot_search.hotspot


def analyse_slide(
    tiles: pd.DataFrame,
    labels: Sequence[str],
    thresholds: Sequence[float],
    mpp: float,
    dimensions: tuple[int, int],
    *,
    field_diameter_um: float = DEFAULT_FIELD_DIAMETER_UM,
    weighting: str | None = None,
    stroma_label: str = STROMA_LABEL,
    tumor_label: str = TUMOR_LABEL,
    area_maps: np.ndarray | None = None,
    slide_id: str | None = None,
    member_fractions: Sequence[float] | None = None,
    member_tiles: Sequence[pd.DataFrame] | None = None,
    interval_calibration: IntervalCalibration | None = None,
) -> SlideAnalysis:
    """The slide's TSR, hotspot and per-label summary.

    Args:
        tiles: the tile table; labels/thresholds: the model's labels and decision thresholds.
        mpp: µm per level-0 pixel; dimensions: level-0 (width, height).
        field_diameter_um: hotspot field diameter (default 2200 µm, a 10x objective field).
        weighting: how TSR and hotspot read label areas; None: "estimated_area" when the table has
            area_<label> columns, else "probability" (`tile_table.default_weighting`).
        area_maps: the sub-tile maps of a model with an area head, carried to the writer.
        slide_id: named at the start of a ValueError for a bad table.
        member_fractions: the slide's stroma fraction per ensemble member, when the model has
            several: they widen the slide's interval by their spread.
        member_tiles: instead of `member_fractions`, each member's tile table (the same tiles): the
            slide's and the hotspot's fractions are read from them as from `tiles`.
        interval_calibration: the checkpoint's model-error margin: widens the slide's and the
            hotspot's intervals alike (`analysis.interval_calibration`); None: sampling only.
    """
    labels = list(labels)
    thresholds = [float(t) for t in thresholds]
    weighting = weighting or default_weighting(tiles, labels)
    try:
        validate_tile_table(tiles, labels)
        if len(thresholds) != len(labels):
            raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels {labels}")
        tsr = compute_tsr(tiles, labels, stroma_label=stroma_label, tumor_label=tumor_label, weighting=weighting)
        search = search_hotspot(
            tiles, mpp, field_diameter_um=field_diameter_um, stroma_label=stroma_label, tumor_label=tumor_label,
            weighting=weighting, min_tissue_coverage=DEFAULT_MIN_TISSUE_COVERAGE, dimensions=tuple(dimensions),
        )
    except ValueError as err:
        raise ValueError(f"{slide_id}: {err}" if slide_id is not None else str(err)) from err
    interval_args = dict(stroma_label=stroma_label, tumor_label=tumor_label, weighting=weighting)
    if member_fractions is None and member_tiles:
        member_fractions = [stroma_fraction(member, **interval_args) for member in member_tiles]
    stroma_interval = stroma_fraction_interval(tiles, member_fractions=member_fractions,
                                               calibration=interval_calibration, **interval_args)
    hotspot = search.hotspot
    hotspot_members = None
    if hotspot is not None and member_tiles:
        hotspot_members = [stroma_fraction(member[member["tile_id"].isin(hotspot.tile_ids)], **interval_args)
                           for member in member_tiles]
    hotspot_interval = None if hotspot is None else stroma_fraction_interval(
        tiles[tiles["tile_id"].isin(hotspot.tile_ids)], member_fractions=hotspot_members,
        calibration=interval_calibration, **interval_args)
    return SlideAnalysis(
        tiles=tiles, labels=labels, thresholds=thresholds, mpp=float(mpp), dimensions=tuple(dimensions), tsr=tsr,
        hotspot_search=search, field_diameter_um=float(field_diameter_um),
        min_tissue_coverage=DEFAULT_MIN_TISSUE_COVERAGE, label_summary=label_summary(tiles, labels, thresholds),
        area_maps=area_maps, stroma_interval=stroma_interval, hotspot_interval=hotspot_interval,
        member_fractions=None if member_fractions is None else [float(f) for f in member_fractions],
        hotspot_member_fractions=hotspot_members,
    )


def stroma_fraction(tiles: pd.DataFrame, *, stroma_label: str, tumor_label: str, weighting: str) -> float:
    """stroma / (stroma + tumour) of the tiles' areas, as the interval's point estimate reads them; NaN without either."""
    stroma = label_area_mm2(tiles, stroma_label, weighting).sum()
    tumor = label_area_mm2(tiles, tumor_label, weighting).sum()
    return float(stroma / (stroma + tumor)) if stroma + tumor > 0 else float("nan")


def label_summary(tiles: pd.DataFrame, labels: Sequence[str], thresholds: Sequence[float]) -> list[dict]:
    """Per label: threshold, positive tiles, probability-weighted and decision areas, mean probability."""
    return [
        {
            "label": name,
            "threshold": float(threshold),
            "n_positive": int((tiles[f"pred_{name}"] == 1).sum()),
            "area_mm2": float(label_area_mm2(tiles, name, "probability").sum()),
            "decision_area_mm2": float(label_area_mm2(tiles, name, "decision").sum()),
            "mean_prob": float(tiles[f"prob_{name}"].mean()) if len(tiles) else None,
        }
        for name, threshold in zip(labels, thresholds)
    ]
