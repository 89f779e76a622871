"""Everything written for one analysed slide, and the slide's row of cohort.csv.

The writer is given the analysis (`ldcsf.analysis.slide_analysis.analyse_slide`) and computes
no number of its own: it draws, tabulates and records.

Files in the slide's output folder (each written atomically):
    tiles.parquet, tiles.csv   the tile table as given
    overlay.png                class map over the thumbnail, hotspot outlined (sub-tile with an area head)
    heatmap_<label>.png        probability of each label, with a colour bar (estimated area
                               fraction, finer than one tile, with an area head)
    subtile_maps.npz           the sub-tile area maps (tile_id, labels, maps), with an area head
    tiles.geojson              tiles and hotspot for QuPath (File > Import objects)
    report.html                one self-contained page with the numbers and pictures
    tsr.json                   all numbers and settings; written LAST: its presence marks the
                               slide as finished, so a crash midway leaves the slide to be redone
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from .. import __version__
from ..analysis.slide_analysis import SlideAnalysis
from ..analysis.tsr import finite_or_none
from ..utils.atomic import atomic_path, write_json_atomic, write_text_atomic
from . import figures
from .geojson import tiles_to_geojson, write_geojson
from .report import render_report
from .tables import write_tile_table

TSR_JSON = "tsr.json"
OVERLAY_PNG = "overlay.png"
SUBTILE_MAPS = "subtile_maps.npz"
GEOJSON = "tiles.geojson"
REPORT_HTML = "report.html"

#: Columns of cohort.csv, one row per slide (the dict `write_slide_outputs` returns).
cohort_summary_columns = [
    "slide_id", "path", "status", "error", "tsr", "stroma_fraction", "category",
    "hotspot_tsr", "hotspot_stroma_fraction", "hotspot_x", "hotspot_y", "tissue_area_mm2", "n_tiles",
    # 95 % intervals (analysis.uncertainty); blank in rows of tsr.json files written before them
    "stroma_fraction_low", "stroma_fraction_high", "near_cutoff",
    "hotspot_stroma_fraction_low", "hotspot_stroma_fraction_high", "hotspot_near_cutoff",
]


def heatmap_filename(label: str) -> str:
    """heatmap_<label>.png with the label made safe for any file system."""
    return f"heatmap_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}.png"


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_slide_outputs(
    out_dir: Path,
    analysis: SlideAnalysis,
    *,
    slide_id: str,
    slide_path: str,
    thumbnail: Image.Image,
    thumbnail_downsample: float,
    settings: dict,
    pictures: bool = True,
) -> dict:
    """Write all outputs of one analysed slide (`ldcsf.analysis.slide_analysis`); return its cohort row.

    Args:
        out_dir: the slide's output folder (created).
        analysis: the slide's tile table, TSR, hotspot and label summary, as `analyse_slide` gives them.
        slide_id, slide_path: how the slide is named in outputs.
        thumbnail: the slide's thumbnail; thumbnail_downsample: level-0 pixels per thumbnail pixel.
        settings: what produced the predictions (checkpoint, model, tile size, ...): copied
            into tsr.json and the report.
        pictures: draw overlay.png and the heatmaps (and show them in the report).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # An old marker would claim this folder is complete while its files are being replaced.
    (out_dir / TSR_JSON).unlink(missing_ok=True)
    tiles, labels, thresholds = analysis.tiles, analysis.labels, analysis.thresholds
    tsr, hotspot, search, area_maps = analysis.tsr, analysis.hotspot, analysis.hotspot_search, analysis.area_maps
    thumbnail = thumbnail.convert("RGB")

    write_tile_table(tiles, out_dir)
    if area_maps is not None:
        with atomic_path(out_dir / SUBTILE_MAPS) as tmp, open(tmp, "wb") as handle:  # a handle: no ".npz" added
            np.savez_compressed(handle, tile_id=tiles["tile_id"].to_numpy(), labels=np.array(labels),
                                maps=area_maps.astype(np.float16))

    images = write_pictures(out_dir, analysis, slide_id, thumbnail, thumbnail_downsample) if pictures else []

    collection = tiles_to_geojson(tiles, labels, thresholds, hotspot, slide_id=slide_id,
                                  dimensions=analysis.dimensions)
    write_geojson(out_dir / GEOJSON, collection)

    write_text_atomic(out_dir / REPORT_HTML, render_report(
        slide_id=slide_id, slide_path=str(slide_path), mpp=analysis.mpp, dimensions=analysis.dimensions, tsr=tsr,
        hotspot=hotspot, hotspot_note=search.reason, labels=labels, thresholds=thresholds,
        label_table=analysis.label_summary, images=images, settings=settings,
        version=__version__, interval=analysis.stroma_interval, hotspot_interval=analysis.hotspot_interval,
    ))

    row = cohort_row(slide_id, slide_path, tsr, hotspot, analysis.stroma_interval, analysis.hotspot_interval)
    write_json_atomic(out_dir / TSR_JSON, tsr_record(analysis, slide_id, slide_path, settings, row, pictures))
    return row


def tsr_record(analysis: SlideAnalysis, slide_id: str, slide_path: str, settings: dict, row: dict,
               pictures: bool = True) -> dict:
    """The content of tsr.json: every number of the analysis, the settings and the cohort row."""
    labels, hotspot, search = analysis.labels, analysis.hotspot, analysis.hotspot_search
    return {
        "slide_id": slide_id,
        "slide_path": str(slide_path),
        "mpp": float(analysis.mpp),
        "dimensions": [int(d) for d in analysis.dimensions],
        "labels": labels,
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
        "files": [TSR_JSON, "tiles.parquet", "tiles.csv",
                  *([OVERLAY_PNG, *map(heatmap_filename, labels)] if pictures else []),
                  GEOJSON, REPORT_HTML, *([SUBTILE_MAPS] if analysis.area_maps is not None else [])],
        "ldcsf_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_pictures(out_dir: Path, analysis: SlideAnalysis, slide_id: str, thumbnail: Image.Image,
                   thumbnail_downsample: float) -> list[tuple[str, bytes]]:
    """overlay.png and heatmap_<label>.png; returns (caption, png) of each, overlay first, for the report."""
    tiles, labels, tsr, hotspot, area_maps = (analysis.tiles, analysis.labels, analysis.tsr, analysis.hotspot,
                                              analysis.area_maps)
    stroma_text = "–" if tsr.stroma_fraction is None else f"{tsr.stroma_fraction:.0%}"
    overlay_title = f"{slide_id}: stroma {stroma_text} ({tsr.category})"
    if hotspot is not None:
        overlay_title += f", hotspot stroma {hotspot.stroma_fraction:.0%}"
    images: list[tuple[str, bytes]] = []
    if area_maps is None:
        png = figures.figure_to_png(figures.plot_class_overlay(
            thumbnail, thumbnail_downsample, tiles, labels, analysis.thresholds, hotspot, title=overlay_title))
        images.append(("Most probable positive label per tile, hotspot outlined", png))
    else:
        from .subtile_figures import plot_subtile_overlay

        png = figures.figure_to_png(plot_subtile_overlay(
            thumbnail, thumbnail_downsample, tiles, area_maps, labels, hotspot, title=overlay_title))
        images.append(("Label with the largest estimated area per sub-tile cell, hotspot outlined", png))
    write_bytes_atomic(out_dir / OVERLAY_PNG, png)
    for i, name in enumerate(labels):
        if area_maps is None:
            mean = tiles[f"prob_{name}"].mean() if len(tiles) else float("nan")
            png = figures.figure_to_png(figures.plot_probability_heatmap(
                thumbnail, thumbnail_downsample, tiles, name, hotspot,
                title=f"{slide_id}: probability of {name} (mean {mean:.2f})"))
            images.append((f"Probability of {name}", png))
        else:
            from .subtile_figures import plot_area_heatmap

            mean = tiles[f"area_{name}"].mean() if len(tiles) else float("nan")
            png = figures.figure_to_png(plot_area_heatmap(
                thumbnail, thumbnail_downsample, tiles, area_maps[:, i], name, hotspot,
                title=f"{slide_id}: estimated area of {name} (mean {mean:.2f})"))
            images.append((f"Estimated area fraction of {name}", png))
        write_bytes_atomic(out_dir / heatmap_filename(name), png)
    return images


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


def read_cohort_row(out_dir: str | Path) -> dict:
    """The cohort row of a finished slide folder (from its tsr.json), e.g. for a skipped slide."""
    import json

    path = Path(out_dir) / TSR_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tsr.json (the slide has not finished)")
    try:
        row = json.loads(path.read_text(encoding="utf-8"))["cohort_row"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: damaged, not a tsr.json written by ldcsf ({type(err).__name__}: {err})") from None
    if not isinstance(row, dict) or not isinstance(row.get("slide_id"), str):
        raise ValueError(f"{path}: damaged, not a tsr.json written by ldcsf (no cohort row)")
    return row
