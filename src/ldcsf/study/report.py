"""study.html: the agreement and survival sections of a cohort, from whichever JSON results exist.

Rebuilt by each study command, so running `ldcsf agreement` after `ldcsf survival` keeps both
sections. Figures are embedded (one self-contained page, like the slide report).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from ..export.report import png_data_uri
from ..utils.atomic import write_text_atomic
from .files import AGREEMENT_JSON, BLAND_ALTMAN_PNG, KM_PNG, STUDY_HTML, SURVIVAL_JSON

STYLE = ("body{font:14px/1.45 system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}"
         "table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}"
         "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}img{max-width:100%}.muted{color:#666;font-size:12px}")


def _num(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(value, low, high, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f} ({_num(low, digits)}–{_num(high, digits)})"


def _p(value) -> str:
    return "–" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=num>{escape(c)}</td>" if i else f"<td>{escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _methods(methods: dict) -> str:
    return "<p class=muted>" + "<br>".join(f"{escape(k)}: {escape(v)}" for k, v in methods.items()) + "</p>"


def agreement_section(result: dict, figure: bytes | None) -> str:
    rows = [[p["pair"], str(p["n"]), _ci(p.get("icc2"), p.get("icc2_low"), p.get("icc2_high")),
             _ci(p.get("icc2k"), p.get("icc2k_low"), p.get("icc2k_high")), _ci(p.get("icc3"), p.get("icc3_low"), p.get("icc3_high")),
             _num(p.get("spearman")), _num(p.get("kappa_high_low")), _num(p.get("kappa_10pct_linear")),
             "–" if p.get("bias") is None else f"{p['bias']:+.1f} ({p['loa_low']:+.1f} to {p['loa_high']:+.1f})"]
            for p in result["pairs"]]
    joint = result.get("raters_icc")
    joint_text = (f"<p>All {len(joint['raters'])} raters together (n={joint['n']}): ICC2 "
                  f"{_ci(joint['icc2'], joint['icc2_low'], joint['icc2_high'])}.</p>" if joint else "")
    picture = f"<img alt='Bland-Altman plots' src='{png_data_uri(figure)}'>" if figure else ""
    return (f"<section id=agreement><h2>Agreement with the reference scores</h2>"
            f"<p>{escape(result['score'])} stroma % of ldcsf; stroma-high above {result['cutoff_pct']:g} %; "
            f"{result['slides']['matched']} slides matched.</p>"
            + _table(["pair", "n", "ICC2 (95% CI)", "ICC2k (95% CI)", "ICC3 (95% CI)", "Spearman", "κ high/low",
                      "κ 10% steps (linear)", "bias (limits), %"], rows)
            + joint_text + picture + _methods(result["methods"]) + "</section>")


def survival_section(result: dict, figure: bytes | None) -> str:
    km = result["kaplan_meier"]
    km_rows = [[name, str(g["n"]), str(g["events"]), _num(g["median_time"], 1)] for name, g in km.items()]
    lr = result["logrank"]
    cox_rows = [[t["model"], t["term"], _ci(t["hr"], t["hr_low"], t["hr_high"]), _p(t["p"]), _p(t["ph_test_p"])]
                for model in result["cox"] for t in model["terms"]]
    violations = sorted({v for model in result["cox"] for v in model["ph_violations"]})
    ph = (f"<p>Proportional hazards doubtful for: {escape(', '.join(violations))}.</p>" if violations
          else "<p>No term fails the proportional-hazards test (p ≥ 0.05).</p>")
    picture = f"<img alt='Kaplan-Meier curves' src='{png_data_uri(figure)}'>" if figure else ""
    covariates = ", ".join(result["covariates"]) or "none"
    return (f"<section id=survival><h2>Survival by TSR</h2>"
            f"<p>{escape(result['score'])} stroma %, stroma-high above {result['cutoff_pct']:g} %; time "
            f"{escape(result['time'])}, event {escape(result['event'])}; covariates: {escape(covariates)}.</p>"
            + _table(["group", "n", "events", f"median {result['time']}"], km_rows)
            + f"<p>Log-rank χ² = {lr['chi2']:.2f} (1 df), p = {_p(lr['p'])}.</p>"
            + _table(["Cox model", "term", "HR (95% CI)", "p", "PH test p"], cox_rows)
            + ph + picture + _methods(result["methods"]) + "</section>")


def write_study_page(folder: str | Path) -> Path:
    """(Re)write study.html in `folder` from the agreement and survival results found there."""
    folder = Path(folder)
    sections = []
    for name, figure, render in ((AGREEMENT_JSON, BLAND_ALTMAN_PNG, agreement_section),
                                 (SURVIVAL_JSON, KM_PNG, survival_section)):
        if (folder / name).is_file():
            result = json.loads((folder / name).read_text(encoding="utf-8"))
            picture = (folder / figure).read_bytes() if (folder / figure).is_file() else None
            sections.append(render(result, picture))
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ldcsf study</title>"
            f"<style>{STYLE}</style></head><body><h1>TSR study</h1>{''.join(sections)}</body></html>")
    write_text_atomic(folder / STUDY_HTML, page)
    return folder / STUDY_HTML
