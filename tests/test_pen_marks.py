"""Marker ink is not tissue: real green/blue ink on a TCGA section, and ink drawn on the CMU slide."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pen_marks import drawn_case, sparse_case  # noqa: E402 - the benchmark's own measurement


def test_real_pen_ink_on_the_tcga_dicom_is_not_tissue(shared_data):
    pytest.importorskip("pydicom")
    result = sparse_case(shared_data)
    assert result["ink_pixels"] > 50_000
    assert result["ink_kept_before"] > 0.9  # a saturation mask takes the ink for tissue
    assert result["ink_kept_after"] < 0.1
    assert result["stain_kept_after"] >= result["stain_kept_before"] - 0.01  # and keeps the stained tissue


def test_ink_drawn_on_a_real_slide_is_not_tissue(shared_data):
    result = drawn_case(shared_data)
    assert result["ink_kept_before"] > 0.9
    assert result["ink_kept_after"] < 0.02
    assert result["stain_kept_after"] > 0.9
