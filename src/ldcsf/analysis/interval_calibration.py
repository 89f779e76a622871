"""The model's part of a stroma fraction's interval: a margin calibrated on sources the model never saw.

A bootstrap over tiles (`uncertainty`) sees only sampling; on a tissue the model misreads
everywhere every tile moves alike, and the sampling interval stays narrow around a wrong number.
The margin here is that missing part, measured where the truth is known: images of held-out
sources (leave-one-source-out folds, pixel masks) whose model never saw their source.

Combination rule, on the calibration's `scale`: with f the scale's transform, P = f(point) and
the sampling interval's half-widths a (below) and b (above) on that scale,

    low  = f⁻¹(P - sqrt(a² + m²)),   high = f⁻¹(P + sqrt(b² + m²))

where m is the calibrated margin, and the ends are kept within [0, 1].

- `fraction` (f the identity; since 2026-12-07): the margin is in units of the stroma fraction.
  The held-out sources' errors are about the same size on this scale (MAE 0.12 colon, 0.13 lung),
  so a margin fitted on one source holds on the other: across sources it covered 97 % of colon and
  94 % of lung images, against 100 % and 82 % on the logit scale, for six recipes alike
  (docs/results.md, "The interval's scale").
- `logit` (f = logit; checkpoints calibrated before): fractions are clipped to [CLIP, 1 - CLIP]
  before the logit (a mask may hold no stroma at all) and an end that reaches the clip is written
  as 0 or 1. The logit stretches errors near 0 and 1, where lung's extreme fractions lie, so a
  margin fitted on colon fell short on lung.

Calibration (split-conformal): for each held-out image, its score is the smallest m for which the
rule above, applied to that image's own sampling interval, holds its mask's fraction, i.e.
sqrt(max(d² - h², 0)) with d the residual on the scale and h the sampling half-width on its side.
The margin is the `level` conformal quantile of the scores (finite-sample corrected: the
ceil((n + 1) level)-th smallest of n), each source weighing as much as any other, whatever its
number of images: the unit that must generalise is the source, not the image. On new images
exchangeable with the calibration ones the combined interval then holds the truth at least
`level` of the time; a source unlike all calibration sources can still fall outside
(benchmarks/interval_calibration.py measures it, each source calibrated without itself).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

#: The rule's name per scale, as `method` records it.
METHODS = {"fraction": "split-conformal, fraction residual beyond sampling",
           "logit": "split-conformal, logit residual beyond sampling"}
#: The scale new calibrations use (benchmarks/interval_calibration.py's default).
DEFAULT_SCALE = "fraction"
#: Fractions are clipped to this distance from 0 and 1 before the logit: 1 %, finer than any score
#: a pathologist gives (10 % steps), and a mask's 0 % stays reachable (see the rule above).
CLIP = 0.01
#: A margin above this spans 0..1 from any point: a bigger one is surely a mistake.
MAX_MARGIN = {"fraction": 1.0, "logit": 2 * math.log((1 - CLIP) / CLIP)}
#: How `describe` names a margin's unit.
UNITS = {"fraction": "of the stroma fraction", "logit": "logits"}


@dataclass(frozen=True)
class IntervalCalibration:
    """What a checkpoint's `interval_calibration` says: the margin, its scale, and where it was measured."""

    margin: float
    scale: str = DEFAULT_SCALE
    level: float = 0.95
    clip: float = CLIP
    #: per calibration source: images (with tumour in their mask) and, from the fold, its model
    sources: dict[str, Any] = field(default_factory=dict)
    #: how the margin was made (the benchmark's command, date, folds); free text, for people
    fitted_by: str = ""

    def __post_init__(self):
        if self.scale not in METHODS:
            raise ValueError(f"scale must be one of {sorted(METHODS)}, got {self.scale!r}")

    @property
    def method(self) -> str:
        return METHODS[self.scale]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method": self.method}

    def describe(self) -> str:
        """The words `interval_method` ends with."""
        images = sum(int(s.get("images", 0)) for s in self.sources.values())
        names = ", ".join(self.sources) or "unnamed sources"
        amount = f"{self.margin:.2f} {UNITS[self.scale]}"
        return (f"widened by a model-error margin of {amount} ({self.method}, "
                f"{self.level:.0%} level, {images} held-out images of {names})")


def interval_calibration_from_dict(value: Any) -> IntervalCalibration:
    """The calibration a checkpoint carries; ValueError (one line, the field's fault) for a bad one.

    A calibration written before scales existed has `margin_logit` and no `scale`: read as the logit scale."""
    if not isinstance(value, dict):
        raise ValueError(f"must be null or a mapping (margin, scale, level, sources, ...), got {type(value).__name__}")
    known = set(IntervalCalibration.__dataclass_fields__) | {"method", "margin_logit"}
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"has unknown keys {sorted(unknown)}")
    value = dict(value)
    if "margin_logit" in value:
        if "margin" in value or value.get("scale", "logit") != "logit":
            raise ValueError("has margin_logit (the logit scale's old name) beside margin or another scale")
        value["margin"], value["scale"] = value.pop("margin_logit"), "logit"
    if "margin" not in value:
        raise ValueError("has no margin")
    scale = value.get("scale", DEFAULT_SCALE)
    if scale not in METHODS:
        raise ValueError(f"scale must be one of {sorted(METHODS)}, got {scale!r}")
    margin, level, clip = value["margin"], value.get("level", 0.95), value.get("clip", CLIP)
    if not _number(margin) or not 0 <= margin <= MAX_MARGIN[scale]:
        raise ValueError(f"margin must be a number in [0, {MAX_MARGIN[scale]:.2f}] on the {scale} scale, got {margin!r}")
    if not _number(level) or not 0.5 <= level < 1:
        raise ValueError(f"level must be a coverage in [0.5, 1), got {level!r}")
    if not _number(clip) or not 0 < clip < 0.5:
        raise ValueError(f"clip must be a number in (0, 0.5), got {clip!r}")
    method = value.pop("method", METHODS[scale])
    if method != METHODS[scale]:
        raise ValueError(f"method must be {METHODS[scale]!r} (the {scale} scale's rule), got {method!r}")
    sources = value.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in sources.items()):
        raise ValueError("sources must map each source's name to what was measured on it")
    if not all(isinstance(v.get("images", 0), int) and not isinstance(v.get("images", 0), bool)
               and v.get("images", 0) >= 0 for v in sources.values()):
        raise ValueError("sources' images must be counts (whole numbers)")
    if not isinstance(value.get("fitted_by", ""), str):
        raise ValueError("fitted_by must be text")
    return IntervalCalibration(**{**value, "scale": scale, "margin": float(margin), "level": float(level),
                                  "clip": float(clip)})


def logit(p: np.ndarray | float, clip: float = CLIP) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), clip, 1 - clip)
    return np.log(p / (1 - p))


def expit(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def to_scale(p: np.ndarray | float, scale: str, clip: float = CLIP) -> np.ndarray:
    """Fractions on the calibration's scale."""
    return logit(p, clip) if scale == "logit" else np.clip(np.asarray(p, dtype=float), 0.0, 1.0)


def from_scale(x: np.ndarray | float, scale: str) -> np.ndarray:
    """Back to fractions, within [0, 1]."""
    return expit(x) if scale == "logit" else np.clip(np.asarray(x, dtype=float), 0.0, 1.0)


def sampling_half_widths(point, low, high, scale: str = DEFAULT_SCALE, clip: float = CLIP) -> tuple[np.ndarray, np.ndarray]:
    """The sampling interval's half-widths below and above the point, on the scale."""
    centre = to_scale(point, scale, clip)
    return (np.maximum(centre - to_scale(low, scale, clip), 0.0),
            np.maximum(to_scale(high, scale, clip) - centre, 0.0))


def widen(point: float, low: float, high: float, calibration: IntervalCalibration) -> tuple[float, float]:
    """The combined interval (module docstring's rule) of a point and its sampling interval."""
    scale, clip, margin = calibration.scale, calibration.clip, calibration.margin
    below, above = sampling_half_widths(point, low, high, scale, clip)
    centre = to_scale(point, scale, clip)
    new_low = float(from_scale(centre - np.hypot(below, margin), scale))
    new_high = float(from_scale(centre + np.hypot(above, margin), scale))
    if scale == "logit":
        # The clip's end stands for 0 or 1 itself: a mask with no stroma at all is inside when it is reached.
        new_low = 0.0 if new_low <= clip + 1e-12 else new_low
        new_high = 1.0 if new_high >= 1 - clip - 1e-12 else new_high
    return min(new_low, low), max(new_high, high)


def conformity_scores(true, point, low, high, scale: str = DEFAULT_SCALE, clip: float = CLIP) -> np.ndarray:
    """Per image: the smallest margin for which `widen` holds its true fraction (0: sampling suffices)."""
    residual = to_scale(true, scale, clip) - to_scale(point, scale, clip)
    below, above = sampling_half_widths(point, low, high, scale, clip)
    side = np.where(residual > 0, above, below)
    return np.sqrt(np.maximum(residual ** 2 - side ** 2, 0.0))


def conformal_margin(scores: Sequence[float], groups: Sequence[str], level: float) -> float:
    """The `level` split-conformal quantile of `scores`, every group (source) weighing the same.

    Hand-written: the weighted, finite-sample-corrected quantile is a few lines, and no well-kept
    library offers it with per-group weights (MAPIE takes a model, not ready residuals).
    """
    scores, groups = np.asarray(scores, dtype=float), np.asarray(groups)
    if len(scores) == 0:
        raise ValueError("no held-out images to calibrate on")
    weights = np.array([1.0 / np.sum(groups == g) for g in groups])
    weights /= weights.sum()
    # Finite-sample correction (the test image counts as one more): ceil((n + 1) level) / n for one group.
    target = min(1.0, math.ceil((len(scores) + 1) * level) / len(scores))
    order = np.argsort(scores, kind="stable")
    reached = np.cumsum(weights[order]) >= target - 1e-12
    return float(scores[order][np.argmax(reached)] if reached.any() else scores.max())


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
