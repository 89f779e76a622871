"""A label's decision from its probability: what prediction does with the thresholds tuning chose."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def apply_thresholds(probs, thresholds: Sequence[float]) -> np.ndarray:
    """Boolean decisions (N, L): prob >= the label's threshold."""
    return np.asarray(probs) >= np.asarray(thresholds, dtype=np.float32)[None, :]
