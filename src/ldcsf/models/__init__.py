"""Model variants: LDCSF and its baselines, built by name through `create_model`.

The names below are loaded on first use (PEP 562): importing a light module of this package
(`input_spec`, `ensemble`) or reading a checkpoint's meta must not import timm, which brings
torchvision and about 2 s of imports; a slide run on an exported model never needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: name -> the module of this package that defines it
_WHERE = {
    "DEFAULT_LABELS": "base",
    "MultiLabelClassifier": "base",
    "TimmClassifier": "baselines",
    "HeadEnsemble": "ensemble",
    "count_parameters": "factory",
    "create_model": "factory",
    "describe_model": "factory",
    "list_models": "factory",
    "LDCSF": "ldcsf",
    "FeatureReconstruction": "ldcsf",
    "LocalDepthConv": "ldcsf",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .base import DEFAULT_LABELS, MultiLabelClassifier
    from .baselines import TimmClassifier
    from .ensemble import HeadEnsemble
    from .factory import count_parameters, create_model, describe_model, list_models
    from .ldcsf import LDCSF, FeatureReconstruction, LocalDepthConv


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
