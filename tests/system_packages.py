"""Skips for tests that need a Debian package `make test` installs (tools/system_packages.sh).

`make test` installs them when it can (root or password-less sudo); where it cannot, the tests
that need them skip with one line naming the command that would.
"""

from __future__ import annotations

import ctypes.util
import shutil
from pathlib import Path

import pytest

INSTALL = "sudo tools/system_packages.sh"
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The Chromium binary, or skip: the browser tests drive it through Debian's chromedriver."""
    found = chromium()
    if found is None or not CHROMEDRIVER.is_file():
        pytest.skip(f"chromium and chromium-driver are not installed: run {INSTALL}")
    return found


def require_turbojpeg() -> None:
    """Skip unless the system's libturbojpeg loads (PyTurboJPEG, under wsidicomizer, needs it)."""
    if ctypes.util.find_library("turbojpeg") is None:
        pytest.skip(f"libturbojpeg0 is not installed: run {INSTALL}")
