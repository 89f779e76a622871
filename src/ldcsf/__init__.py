"""ldcsf: multi-label H&E tissue classification, whole-slide inference and tumour-to-stroma ratio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ldcsf")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["DEFAULT_LABELS", "__version__", "create_model", "list_models"]


def __getattr__(name: str):
    # The model API pulls in torch and timm; importing it on first use keeps `ldcsf --help` and
    # the light subcommands quick to start.
    if name == "DEFAULT_LABELS":  # the labels need no torch
        from .labels import default_labels

        return default_labels()
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'ldcsf' has no attribute {name!r}")
