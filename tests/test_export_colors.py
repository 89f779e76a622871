"""The label colours stay readable over H&E: an overlay must not look like the stain beneath it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from ldcsf.export.colors import LABEL_COLORS, label_colors

#: Median colours of the most eosin-rich and the most haematoxylin-rich tissue of the TCGA section in
#: ../shared/data/slides (TCGA-CR-7395-01A-01-TS1, 1024 px thumbnail, skimage's rgb2hed, top 15 %).
EOSIN_PINK = (194, 70, 127)
HAEMATOXYLIN_PURPLE = (165, 69, 118)
OVERLAY_ALPHA = 0.45  # figures.plot_class_overlay's default, and the viewer's starting opacity


def delta_e(a, b) -> float:
    lab = rgb2lab(np.array([[a, b]], dtype=float) / 255)
    return float(deltaE_ciede2000(lab[0, 0], lab[0, 1]))


@pytest.mark.parametrize("stain", [EOSIN_PINK, HAEMATOXYLIN_PURPLE])
@pytest.mark.parametrize("label", sorted(LABEL_COLORS))
def test_each_label_stands_out_from_both_stains(label, stain):
    under = np.array(stain, dtype=float)
    blended = (1 - OVERLAY_ALPHA) * under + OVERLAY_ALPHA * np.array(LABEL_COLORS[label])
    assert delta_e(under, blended) >= 15, f"{label} overlaid on {stain} is hard to see"


def test_labels_are_told_apart_from_each_other():
    for a, b in itertools.combinations(sorted(LABEL_COLORS), 2):
        assert delta_e(LABEL_COLORS[a], LABEL_COLORS[b]) >= 25, (a, b)


def test_extra_labels_get_distinct_colours():
    colours = label_colors(["stroma", "tumor", "lymphocytes", "mucus"])
    assert len(set(colours.values())) == 4 and colours["stroma"] == LABEL_COLORS["stroma"]
