"""tsr.json, the record of one analysed slide, and the slide's row of cohort.csv.

tsr.json holds every number of the analysis, the settings and the files the writers wrote
(`slide_writers`); it is written last, so its presence marks the slide's folder as finished.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__

if TYPE_CHECKING:  # the command line reads the output names beside this module: no pandas on import
    from ..analysis.slide_analysis import SlideAnalysis

TSR_JSON = "tsr.json"

#: Columns of cohort.csv, one row per slide (the dict `write_slide_outputs` returns).
cohort_summary_columns = [
    "slide_id", "path", "status", "error", "tsr", "stroma_fraction", "category",
    "hotspot_tsr", "hotspot_stroma_fraction", "hotspot_x", "hotspot_y", "tissue_area_mm2", "n_tiles",
    # 95 % intervals (analysis.uncertainty); blank in rows of tsr.json files written before them
    "stroma_fraction_low", "stroma_fraction_high", "near_cutoff",
    "hotspot_stroma_fraction_low", "hotspot_stroma_fraction_high", "hotspot_near_cutoff",
]


def tsr_record(analysis: SlideAnalysis, slide_id: str, slide_path: str, settings: dict, row: dict,
               files: list[str], outputs: list[str] | None = None) -> dict:
    """The content of tsr.json: every number of the analysis, the settings and the cohort row.

    `files`: what the slide's folder holds, as the writers wrote it; `outputs`: the outputs chosen
    when not all of them (a rerun asking for more then adds them), recorded only then.
    """
    hotspot, search = analysis.hotspot, analysis.hotspot_search
    return {
        "slide_id": slide_id,
        "slide_path": str(slide_path),
        "mpp": float(analysis.mpp),
        "dimensions": [int(d) for d in analysis.dimensions],
        "labels": analysis.labels,
        "thresholds": analysis.thresholds,
        "tsr": {**analysis.tsr.to_dict(), **interval_fields(analysis.stroma_interval),
                **member_fields(analysis.member_fractions)},
        "reliable": analysis.tsr.reliable,
        "reliability_note": analysis.tsr.reliability_note,
        "hotspot": {**hotspot.to_dict(), **interval_fields(analysis.hotspot_interval),
                    **member_fields(analysis.hotspot_member_fractions)} if hotspot is not None else None,
        "hotspot_search": {
            "field_diameter_um": float(analysis.field_diameter_um),
            "min_tissue_coverage": analysis.min_tissue_coverage,
            "tumor_at_borders": "pred == 1 in each of the N/E/S/W border sectors",
            "n_candidate_fields": search.n_candidate_fields,
            "n_qualifying_fields": search.n_qualifying_fields,
            "note": search.reason,
        },
        "label_summary": analysis.label_summary,
        "settings": settings,
        "cohort_row": row,
        "files": list(files),
        **({} if outputs is None else {"outputs": list(outputs)}),
        "ldcsf_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def interval_fields(interval) -> dict:
    """The interval keys of tsr.json's "tsr" and "hotspot" (null values when there is no interval)."""
    if interval is None:
        return {"stroma_fraction_interval": None, "interval_method": None, "near_cutoff": None}
    return interval.to_dict()


def member_fields(fractions) -> dict:
    """An ensemble's per-member stroma fractions (tsr.json's "tsr" and "hotspot"); nothing for a single model."""
    if not fractions:
        return {}
    return {"member_stroma_fractions": [None if f != f else float(f) for f in fractions]}  # NaN -> null


def cohort_row(slide_id: str, slide_path: str, tsr, hotspot, interval=None, hotspot_interval=None) -> dict:
    """The slide's cohort.csv row (keys in `cohort_summary_columns` order)."""
    from ..analysis.tsr import finite_or_none

    return {
        "slide_id": slide_id,
        "path": str(slide_path),
        "status": "ok",
        "error": "",
        "tsr": finite_or_none(tsr.tsr),
        "stroma_fraction": tsr.stroma_fraction,
        "category": tsr.category,
        "hotspot_tsr": finite_or_none(hotspot.tsr) if hotspot is not None else None,
        "hotspot_stroma_fraction": hotspot.stroma_fraction if hotspot is not None else None,
        "hotspot_x": hotspot.x if hotspot is not None else None,
        "hotspot_y": hotspot.y if hotspot is not None else None,
        "tissue_area_mm2": tsr.tissue_area_mm2,
        "n_tiles": tsr.n_tiles,
        "stroma_fraction_low": interval.low if interval is not None else None,
        "stroma_fraction_high": interval.high if interval is not None else None,
        "near_cutoff": interval.near_cutoff if interval is not None else None,
        "hotspot_stroma_fraction_low": hotspot_interval.low if hotspot_interval is not None else None,
        "hotspot_stroma_fraction_high": hotspot_interval.high if hotspot_interval is not None else None,
        "hotspot_near_cutoff": hotspot_interval.near_cutoff if hotspot_interval is not None else None,
    }


def read_slide_record(out_dir: str | Path) -> dict:
    """The tsr.json of a finished slide folder; FileNotFoundError / ValueError (one line) when there is none."""
    path = Path(out_dir) / TSR_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tsr.json (the slide has not finished)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        row = record["cohort_row"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: damaged, not a tsr.json written by ldcsf ({type(err).__name__}: {err})") from None
    if not isinstance(row, dict) or not isinstance(row.get("slide_id"), str):
        raise ValueError(f"{path}: damaged, not a tsr.json written by ldcsf (no cohort row)")
    return record


def read_cohort_row(out_dir: str | Path) -> dict:
    """The cohort row of a finished slide folder (from its tsr.json), e.g. for a skipped slide."""
    return read_slide_record(out_dir)["cohort_row"]
