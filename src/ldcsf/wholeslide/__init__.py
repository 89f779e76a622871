"""The whole-slide application: a slide planned, its tiles predicted into resumable parts, analysed
and written; cohorts of slides; what a slide's results were made from.

Running the model itself is `ldcsf.inference`'s (the one `Predictor`, runtimes, gathering).
"""

from .cohort import collect_slides, run_cohort
from .pipeline import NoTissueError, SlideResult, SlideSettings, run_slide, slide_id_for
from .prediction_store import PredictionStore

__all__ = [
    "NoTissueError",
    "PredictionStore",
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


def __getattr__(name: str):
    # The Lightning predictor on first use: a slide run on one device never loads Lightning; and the
    # torch pieces on first use, as a small slide on ONNX Runtime never loads torch.
    if name == "TilePredictor":
        from ..inference.predictor import Predictor

        return Predictor
    if name == "TileDataset":
        from .tile_dataset import TileDataset

        return TileDataset
    if name == "predict_tiles":
        from .tile_prediction import predict_tiles

        return predict_tiles
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
