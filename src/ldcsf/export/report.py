"""report.html: one self-contained page per slide (inline CSS, images as data URIs).

Nothing is fetched from elsewhere, so the page opens the same offline, attached to an e-mail or
copied out of the results folder. All text from the slide, settings and labels is escaped.
"""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Sequence

from ..analysis.hotspot import Hotspot
from ..analysis.tsr import TSRResult
from ..analysis.uncertainty import FractionInterval
from .colors import hex_color, label_colors

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.big{font-size:1.3em;font-weight:600}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:middle;margin-right:.4em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}
.muted{color:#666}code{font-size:.9em}
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ratio(value) -> str:
    """Tumour/stroma: infinite when there is tumour but no stroma, undefined without either."""
    if value is None:
        return "–"
    return "∞" if value == float("inf") else f"{value:.3f}"


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def _interval_text(interval: FractionInterval | None) -> str:
    """" (95 % interval 38–55 %, near the cut-off)" or "" without an interval."""
    if interval is None:
        return ""
    near = ", near the cut-off" if interval.near_cutoff else ""
    return f" (95 % interval {interval.low:.0%}–{interval.high:.0%}{near})"


def _interval_rows(interval: FractionInterval | None) -> list[tuple[str, str]]:
    if interval is None:
        return []
    near = "yes: the interval straddles the 50 % cut-off" if interval.near_cutoff else "no"
    return [("Stroma fraction, 95 % interval", f"{_pct(interval.low)} – {_pct(interval.high)}"),
            ("Near the cut-off", near), ("Interval method", interval.method)]


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{escape(str(k))}</th><td class=num>{escape(v)}</td></tr>" for k, v in pairs)


def render_report(
    *,
    slide_id: str,
    slide_path: str,
    mpp: float,
    dimensions: tuple[int, int],
    tsr: TSRResult,
    hotspot: Hotspot | None,
    hotspot_note: str,
    labels: Sequence[str],
    thresholds: Sequence[float],
    label_table: list[dict],
    images: list[tuple[str, bytes]],
    settings: dict,
    version: str,
    interval: FractionInterval | None = None,
    hotspot_interval: FractionInterval | None = None,
) -> str:
    """The report as an HTML string. `images` are (caption, PNG bytes) pairs, shown in order;
    `label_table` has one dict per label (label, threshold, n_positive, area_mm2,
    decision_area_mm2, mean_prob)."""
    colors = label_colors(labels)
    summary = _rows([
        ("Stroma fraction", _pct(tsr.stroma_fraction)),
        ("Tumour / stroma (TSR)", _ratio(tsr.tsr)),
        ("Category (cut-off 50 % stroma)", tsr.category),
        *_interval_rows(interval),
        ("Stroma area", f"{tsr.stroma_area_mm2:.2f} mm²"),
        ("Tumour area", f"{tsr.tumor_area_mm2:.2f} mm²"),
        ("Tissue area", f"{tsr.tissue_area_mm2:.2f} mm²"),
        ("Tiles", str(tsr.n_tiles)),
        ("Weighting", tsr.weighting),
    ] + ([("Note", tsr.note)] if tsr.note else [])
      + ([("Reliability", tsr.reliability_note)] if not getattr(tsr, "reliable", True) else []))
    if hotspot is not None:
        hot = _rows([
            ("Stroma fraction", _pct(hotspot.stroma_fraction)),
            ("Tumour / stroma (TSR)", _ratio(hotspot.tsr)),
            ("Category", hotspot.category),
            *_interval_rows(hotspot_interval),
            ("Centre (level-0 px)", f"x={hotspot.x:.0f}, y={hotspot.y:.0f}"),
            ("Field diameter", f"{hotspot.diameter_um:.0f} µm"),
            ("Tiles in field", str(hotspot.n_tiles)),
            ("Qualifying fields", str(hotspot.n_qualifying_fields)),
        ])
        hotspot_html = f"<table>{hot}</table>"
    else:
        hotspot_html = f"<p class=muted>No hotspot: {escape(hotspot_note)}.</p>"

    label_rows = "".join(
        "<tr>"
        f"<td><span class=swatch style=\"background:{hex_color(colors[row['label']])}\"></span>{escape(row['label'])}</td>"
        f"<td class=num>{row['threshold']:.3f}</td><td class=num>{row['n_positive']}</td>"
        f"<td class=num>{row['area_mm2']:.3f}</td><td class=num>{row['decision_area_mm2']:.3f}</td>"
        f"<td class=num>{_fmt(row['mean_prob'])}</td></tr>"
        for row in label_table
    )
    label_html = (
        "<table><tr><th>Label</th><th>Threshold</th><th>Positive tiles</th><th>Area (prob.-weighted, mm²)</th>"
        f"<th>Area (decision, mm²)</th><th>Mean probability</th></tr>{label_rows}</table>"
    )
    figures = "".join(
        f"<figure><img src=\"{png_data_uri(png)}\" alt=\"{escape(caption)}\"><figcaption>{escape(caption)}</figcaption></figure>"
        for caption, png in images
    )
    settings_rows = _rows(
        (k, v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in settings.items()
    )
    slide_rows = _rows([
        ("Path", slide_path),
        ("Level-0 size", f"{dimensions[0]} × {dimensions[1]} px"),
        ("Pixel size", f"{mpp:.4f} µm/px"),
    ])
    title = escape(f"{slide_id}: tumour-stroma ratio")
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content=\"width=device-width,initial-scale=1\"><title>{title}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{escape(slide_id)}</h1>"
        f"<p class=big>Stroma {_pct(tsr.stroma_fraction)}{escape(_interval_text(interval))} · {escape(tsr.category)}</p>"
        + (f"<p class=big id=unreliable>{escape(tsr.reliability_note)}</p>" if not tsr.reliable else "") +
        f"<h2>Whole slide</h2><table>{summary}</table>"
        f"<h2>Hotspot (most stroma-rich field with tumour at all four borders)</h2>{hotspot_html}"
        f"<h2>Labels</h2>{label_html}"
        f"<h2>Pictures</h2>{figures}"
        f"<h2>Slide</h2><table>{slide_rows}</table>"
        f"<h2>Settings</h2><table>{settings_rows}</table>"
        f"<p class=muted>ldcsf {escape(version)}</p>"
        "</body></html>\n"
    )
