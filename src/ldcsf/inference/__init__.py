"""Prediction: the one `Predictor` (image data sets, whole slides), one slide or a cohort at a time."""

from .cohort import collect_slides, run_cohort
from .dataset import TileDataset
from .engine import PredictionStore, TilePredictor, predict_tiles
from .pipeline import NoTissueError, SlideResult, SlideSettings, run_slide, slide_id_for
from .predictor import Predictor

__all__ = [
    "NoTissueError",
    "PredictionStore",
    "Predictor",
    "SlideResult",
    "SlideSettings",
    "TileDataset",
    "TilePredictor",
    "collect_slides",
    "predict_tiles",
    "run_cohort",
    "run_slide",
    "slide_id_for",
]
