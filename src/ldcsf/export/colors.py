"""The one place that gives each label its colour (pictures, legend, QuPath classes)."""

from __future__ import annotations

from typing import Sequence

#: Colours of the default labels, chosen to stand out on H&E rather than to imitate it: an overlay
#: in eosin pink or haematoxylin purple vanishes into the tissue beneath. Green (stroma) is the
#: complement of eosin, yellow (tumour) of haematoxylin; necrosis black, non-tumour sky blue.
#: At the overlay's 45 % opacity each differs from both stains by a CIEDE2000 distance of 17 or
#: more (the old eosin-pink stroma: 6); see tests/test_export_colors.py.
LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "stroma": (0, 170, 70),
    "tumor": (255, 200, 0),
    "necrosis": (0, 0, 0),
    "non_tumor": (0, 140, 255),
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
