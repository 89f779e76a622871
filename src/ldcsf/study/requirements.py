"""The `study` extra: lifelines, pingouin and scikit-learn, imported only when a study command runs."""

from __future__ import annotations

import importlib
from types import ModuleType


class StudyExtraMissing(ImportError, ValueError):
    """A package of the `study` extra is missing (a ValueError too: the CLI prints it in one line)."""


def require(module: str, what: str) -> ModuleType:
    """Import `module` or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise StudyExtraMissing(
            f"{what} needs the Python package {module.split('.')[0]!r}: pip install 'ldcsf[study]'") from err
