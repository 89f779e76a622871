"""Slide-level analysis over a tile table: tumour-to-stroma ratio and its clinical hotspot."""

from .hotspot import DEFAULT_FIELD_DIAMETER_UM, Hotspot, find_hotspot
from .tsr import TSRResult, compute_tsr

__all__ = ["DEFAULT_FIELD_DIAMETER_UM", "Hotspot", "TSRResult", "compute_tsr", "find_hotspot"]
