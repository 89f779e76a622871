"""Prediction: the one `Predictor` (image data sets, whole slides), one slide or a cohort at a time."""

from __future__ import annotations

import importlib

#: Public names and the module each lives in, imported on first use: the CLI reads the runtimes'
#: table (`ldcsf.inference.runtimes`) while building its parser, which must not load torch.
_NAMES = {
    "NoTissueError": "pipeline",
    "PredictionStore": "engine",
    "Predictor": "predictor",
    "SlideResult": "pipeline",
    "SlideSettings": "pipeline",
    "TileDataset": "dataset",
    "TilePredictor": "engine",
    "collect_slides": "cohort",
    "predict_tiles": "engine",
    "run_cohort": "cohort",
    "run_slide": "pipeline",
    "slide_id_for": "pipeline",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
