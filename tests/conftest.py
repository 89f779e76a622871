"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("LDCSF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Tests run in parallel workers on small machines: one thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real H&E images beside the project, or skip when this checkout has none."""
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip(f"real H&E test images not found at {SHARED_DATA} (set LDCSF_SHARED_DATA to their folder)")
    return SHARED_DATA
