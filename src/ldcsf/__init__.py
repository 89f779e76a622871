"""ldcsf: multi-label H&E tissue classification, whole-slide inference and tumour-to-stroma ratio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ldcsf")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .models import DEFAULT_LABELS, create_model, list_models  # noqa: E402

__all__ = ["DEFAULT_LABELS", "__version__", "create_model", "list_models"]
