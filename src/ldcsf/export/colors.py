"""The one place that gives each label its colour (pictures, legend, QuPath classes)."""

from __future__ import annotations

from typing import Sequence

#: Colours of the default labels, chosen to read like an H&E legend: stroma pink (eosin),
#: tumour purple (haematoxylin-dense), necrosis yellow-grey, non-tumour green.
LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "stroma": (233, 95, 180),
    "tumor": (110, 40, 170),
    "necrosis": (200, 180, 90),
    "non_tumor": (60, 170, 90),
}
#: Outline of the TSR hotspot in pictures and its QuPath class colour.
HOTSPOT_COLOR: tuple[int, int, int] = (0, 200, 230)
HOTSPOT_CLASS = "TSR hotspot"


def label_colors(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """RGB (0-255) per label: the fixed colour when known, else the next tab10 colour."""
    from matplotlib import colormaps  # imported here: GeoJSON export needs no plotting stack

    palette = colormaps["tab10"].colors
    colors, extra = {}, 0
    for name in labels:
        if name in LABEL_COLORS:
            colors[name] = LABEL_COLORS[name]
        else:
            rgb = palette[(extra + 4) % len(palette)]  # skip tab10's first colours, close to ours
            colors[name] = tuple(int(round(255 * c)) for c in rgb[:3])
            extra += 1
    return colors


def hex_color(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
