"""The model's part of a stroma fraction's interval: a margin calibrated on sources the model never saw.

A bootstrap over tiles (`uncertainty`) sees only sampling; on a tissue the model misreads
everywhere every tile moves alike, and the sampling interval stays narrow around a wrong number.
The margin here is that missing part, measured where the truth is known: images of held-out
sources (leave-one-source-out folds, pixel masks) whose model never saw their source.

Combination rule (on the logit of the fraction, so the interval stays inside [0, 1]): with
L = logit(point) and the sampling interval's half-widths a (below) and b (above) on that scale,

    low  = expit(L - sqrt(a² + m²)),   high = expit(L + sqrt(b² + m²))

where m is the calibrated margin. Fractions are clipped to [CLIP, 1 - CLIP] before the logit (a
mask may hold no stroma at all); an end that reaches the clip is written as 0 or 1.

Calibration (split-conformal): for each held-out image, its score is the smallest m for which the
rule above, applied to that image's own sampling interval, holds its mask's fraction, i.e.
sqrt(max(d² - h², 0)) with d the logit residual and h the sampling half-width on its side. The
margin is the `level` conformal quantile of the scores (finite-sample corrected: the
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

METHOD = "split-conformal, logit residual beyond sampling"
#: Fractions are clipped to this distance from 0 and 1 before the logit: 1 %, finer than any score
#: a pathologist gives (10 % steps), and a mask's 0 % stays reachable (see the rule above).
CLIP = 0.01
#: A margin above this (logits) spans 0.01..0.99 from any point: a bigger one is surely a mistake.
MAX_MARGIN = 2 * math.log((1 - CLIP) / CLIP)


@dataclass(frozen=True)
class IntervalCalibration:
    """What a checkpoint's `interval_calibration` says: the margin and where it was measured."""

    margin_logit: float
    level: float = 0.95
    method: str = METHOD
    clip: float = CLIP
    #: per calibration source: images (with tumour in their mask) and, from the fold, its model
    sources: dict[str, Any] = field(default_factory=dict)
    #: how the margin was made (the benchmark's command, date, folds); free text, for people
    fitted_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The words `interval_method` ends with."""
        images = sum(int(s.get("images", 0)) for s in self.sources.values())
        names = ", ".join(self.sources) or "unnamed sources"
        return (f"widened by a model-error margin of {self.margin_logit:.2f} logits ({self.method}, "
                f"{self.level:.0%} level, {images} held-out images of {names})")


def interval_calibration_from_dict(value: Any) -> IntervalCalibration:
    """The calibration a checkpoint carries; ValueError (one line, the field's fault) for a bad one."""
    if not isinstance(value, dict):
        raise ValueError(f"must be null or a mapping (margin_logit, level, sources, ...), got {type(value).__name__}")
    unknown = set(value) - set(IntervalCalibration.__dataclass_fields__)
    if unknown:
        raise ValueError(f"has unknown keys {sorted(unknown)}")
    if "margin_logit" not in value:
        raise ValueError("has no margin_logit")
    margin, level, clip = value["margin_logit"], value.get("level", 0.95), value.get("clip", CLIP)
    if not _number(margin) or not 0 <= margin <= MAX_MARGIN:
        raise ValueError(f"margin_logit must be a number in [0, {MAX_MARGIN:.2f}], got {margin!r}")
    if not _number(level) or not 0.5 <= level < 1:
        raise ValueError(f"level must be a coverage in [0.5, 1), got {level!r}")
    if not _number(clip) or not 0 < clip < 0.5:
        raise ValueError(f"clip must be a number in (0, 0.5), got {clip!r}")
    if value.get("method", METHOD) != METHOD:
        raise ValueError(f"method must be {METHOD!r} (the only rule this ldcsf applies), got {value.get('method')!r}")
    sources = value.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in sources.items()):
        raise ValueError("sources must map each source's name to what was measured on it")
    if not all(isinstance(v.get("images", 0), int) and not isinstance(v.get("images", 0), bool)
               and v.get("images", 0) >= 0 for v in sources.values()):
        raise ValueError("sources' images must be counts (whole numbers)")
    if not isinstance(value.get("fitted_by", ""), str):
        raise ValueError("fitted_by must be text")
    return IntervalCalibration(**{**value, "margin_logit": float(margin), "level": float(level), "clip": float(clip)})


def logit(p: np.ndarray | float, clip: float = CLIP) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), clip, 1 - clip)
    return np.log(p / (1 - p))


def expit(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def sampling_half_widths(point, low, high, clip: float = CLIP) -> tuple[np.ndarray, np.ndarray]:
    """The sampling interval's half-widths below and above the point, on the logit scale."""
    centre = logit(point, clip)
    return np.maximum(centre - logit(low, clip), 0.0), np.maximum(logit(high, clip) - centre, 0.0)


def widen(point: float, low: float, high: float, calibration: IntervalCalibration) -> tuple[float, float]:
    """The combined interval (module docstring's rule) of a point and its sampling interval."""
    clip, margin = calibration.clip, calibration.margin_logit
    below, above = sampling_half_widths(point, low, high, clip)
    centre = logit(point, clip)
    new_low = float(expit(centre - np.hypot(below, margin)))
    new_high = float(expit(centre + np.hypot(above, margin)))
    # The clip's end stands for 0 or 1 itself: a mask with no stroma at all is inside when it is reached.
    return (0.0 if new_low <= clip + 1e-12 else min(new_low, low),
            1.0 if new_high >= 1 - clip - 1e-12 else max(new_high, high))


def conformity_scores(true, point, low, high, clip: float = CLIP) -> np.ndarray:
    """Per image: the smallest margin for which `widen` holds its true fraction (0: sampling suffices)."""
    residual = logit(true, clip) - logit(point, clip)
    below, above = sampling_half_widths(point, low, high, clip)
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
