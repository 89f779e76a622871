"""Model variants: LDCSF and its baselines, built by name through `create_model`."""

from .base import DEFAULT_LABELS, MultiLabelClassifier
from .baselines import TimmClassifier
from .ensemble import HeadEnsemble
from .factory import count_parameters, create_model, describe_model, list_models
from .ldcsf import LDCSF, FeatureReconstruction, LocalDepthConv

__all__ = [
    "DEFAULT_LABELS",
    "LDCSF",
    "FeatureReconstruction",
    "HeadEnsemble",
    "LocalDepthConv",
    "MultiLabelClassifier",
    "TimmClassifier",
    "count_parameters",
    "create_model",
    "describe_model",
    "list_models",
]
