"""Running a model: the one `Predictor` (model + normalisation in, probabilities and area maps out),
its runtimes (PyTorch, ONNX Runtime, OpenVINO), data sets and image files predicted and gathered
across processes. Whole slides are `ldcsf.wholeslide`'s.
"""

from __future__ import annotations

import importlib
import warnings

__all__ = ["Predictor"]

#: Names and modules that lived here before the whole-slide application got its own package:
#: still importable, with a DeprecationWarning. Resolved with importlib at first use, so this
#: lower floor never imports the higher one (tests/test_import_graph.py holds the order).
_MOVED_NAMES = {name: "ldcsf.wholeslide" for name in (
    "NoTissueError", "PredictionStore", "SlideResult", "SlideSettings", "TileDataset", "TilePredictor",
    "collect_slides", "predict_tiles", "run_cohort", "run_slide", "slide_id_for")}


def __getattr__(name: str):
    # Predictor on first use too: the CLI reads the runtimes' table (`runtimes.py`) while building
    # its parser, and that must not load torch and Lightning.
    if name == "Predictor":
        from .predictor import Predictor

        return Predictor
    if name in _MOVED_NAMES:
        warnings.warn(f"ldcsf.inference.{name} moved to ldcsf.wholeslide.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED_NAMES[name]), name)
    raise AttributeError(f"module 'ldcsf.inference' has no attribute {name!r}")
