"""Slide-level analysis over a tile table: tumour-to-stroma ratio and its clinical hotspot."""

from .hotspot import DEFAULT_FIELD_DIAMETER_UM, Hotspot, find_hotspot
from .slide_analysis import SlideAnalysis, analyse_slide
from .tsr import TSRResult, compute_tsr

__all__ = [
    "DEFAULT_FIELD_DIAMETER_UM", "Hotspot", "SlideAnalysis", "TSRResult", "analyse_slide", "compute_tsr", "find_hotspot",
]
