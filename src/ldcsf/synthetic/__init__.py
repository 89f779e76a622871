"""Procedural H&E: generated tissue layouts with known composition, rendered as H&E caricatures.

The project ships no third-party images; these generators give it data of its own for the
demo and tests: `make_layout` (ground-truth class maps), `render_he` (an H&E look in
Beer–Lambert optical density), `make_training_set` (labelled tiles + manifest) and `make_slide`
(a pyramidal TIFF with a known tumour-to-stroma ratio). Synthetic textures are a caricature of
histology, not a substitute for it.
"""

from .layout import CLASSES, class_pixel_counts, colour_layout, make_layout, tissue_fractions
from .render import render_he
from .slide import SyntheticSlide, make_slide
from .training_set import make_training_set

__all__ = [
    "CLASSES",
    "SyntheticSlide",
    "class_pixel_counts",
    "colour_layout",
    "make_layout",
    "make_slide",
    "make_training_set",
    "render_he",
    "tissue_fractions",
]
