"""The study's pictures: Bland-Altman plots and Kaplan-Meier curves with numbers at risk.

Plain `matplotlib.figure.Figure` objects on the Agg canvas (as in ldcsf.export.figures): no
display and no pyplot state. Returned as PNG bytes; the callers write them atomically.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

from .requirements import require

DPI = 100
COLORS = {"stroma-high": "#c0392b", "stroma-low": "#1f77b4"}


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def bland_altman_png(pairs: list[dict], scores: dict[str, list]) -> bytes:
    """One panel per pair of percentage scores: difference against mean, bias and limits of agreement."""
    pairs = [p for p in pairs if p.get("bias") is not None]
    columns = min(3, max(1, len(pairs)))
    rows = math.ceil(len(pairs) / columns) if pairs else 1
    fig = Figure(figsize=(4.6 * columns, 3.8 * rows), dpi=DPI, layout="constrained")
    for i, pair in enumerate(pairs):
        ax = fig.add_subplot(rows, columns, i + 1)
        a, b = np.asarray(scores[pair["first"]], float), np.asarray(scores[pair["second"]], float)
        both = ~(np.isnan(a) | np.isnan(b))
        a, b = a[both], b[both]
        ax.scatter((a + b) / 2, a - b, s=14, color="#333", alpha=0.75)
        for value, style, text in ((pair["bias"], "-", "bias"), (pair["loa_low"], "--", "-1.96 SD"),
                                   (pair["loa_high"], "--", "+1.96 SD")):
            ax.axhline(value, color="#c0392b", linestyle=style, linewidth=1)
            ax.annotate(f"{text} {value:+.1f}", (1.0, value), xycoords=("axes fraction", "data"), ha="right",
                        va="bottom", fontsize=8, color="#c0392b")
        ax.axhline(0, color="#999", linewidth=0.6)
        ax.set_xlim(0, 100)
        ax.set_xlabel("mean stroma (%)")
        ax.set_ylabel(f"{pair['first']} - {pair['second']} (%)")
        icc = f", ICC2 {pair['icc2']:.2f}" if pair.get("icc2") is not None else ""
        ax.set_title(f"{pair['pair']} (n={pair['n']}{icc})", fontsize=10)
    if not pairs:
        fig.text(0.5, 0.5, "no pair of percentage scores (categories only)", ha="center")
    return png_bytes(fig)


def kaplan_meier_png(groups: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str, time_label: str,
                     logrank_p: float | None) -> bytes:
    """Kaplan-Meier curves (95 % bands) per group, the numbers at risk below (lifelines)."""
    lifelines = require("lifelines", "the Kaplan-Meier figure")
    from lifelines.plotting import add_at_risk_counts

    fig = Figure(figsize=(7.5, 5.6), dpi=DPI, layout="tight")
    ax = fig.add_subplot()
    fitters = []
    for name, (time, event) in groups.items():
        fitter = lifelines.KaplanMeierFitter(label=f"{name} (n={len(time)})").fit(time, event)
        fitter.plot_survival_function(ax=ax, ci_show=True, show_censors=True, color=COLORS.get(name),
                                      censor_styles={"ms": 5, "marker": "|"})
        fitters.append(fitter)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(time_label)
    ax.set_ylabel("survival probability")
    ax.set_title(title + (f"; log-rank p = {logrank_p:.3g}" if logrank_p is not None else ""), fontsize=10)
    add_at_risk_counts(*fitters, ax=ax, fig=fig, rows_to_show=["At risk"])
    return png_bytes(fig)
