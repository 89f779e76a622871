"""The Python packages each runtime needs: found without importing them, or one line naming the fix."""

from __future__ import annotations


class RuntimeMissingError(ImportError, ValueError):
    """The package a runtime needs is not installed (a ValueError too: the CLI prints it in one line)."""


def check_installed(needs: tuple[str, ...], runtime: str, extra: str | None = None) -> None:
    """RuntimeMissingError (one line) unless every package in `needs` is installed (found, not imported:
    `onnx` alone takes 0.5 s to import, and a trusted file needs no `onnx`)."""
    import importlib.util

    for module in needs:
        if importlib.util.find_spec(module) is None:
            require_package(module, runtime, extra)  # raises the one-line error


def require_package(module: str, runtime: str, extra: str | None = None):
    """The imported package `module`, or RuntimeMissingError (one line) naming the runtime that needs it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise RuntimeMissingError(
            f"--runtime {runtime} needs the Python package {module!r}: "
            + (f"pip install 'ldcsf[{extra}]'" if extra else f"pip install {module} (a dependency of ldcsf)")
        ) from err
