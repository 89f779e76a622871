"""Each label's colour in pictures, the legend and QuPath classes (read from `ldcsf.labels`)."""

from __future__ import annotations

from typing import Sequence

from .. import labels as project_labels

#: Colours of the project's labels, as `ldcsf.labels` defines them (the reasons for them are stated there).
LABEL_COLORS: dict[str, tuple[int, int, int]] = {label.name: label.color for label in project_labels.LABELS}
#: Outline of the TSR hotspot in pictures and its QuPath class colour.
HOTSPOT_COLOR: tuple[int, int, int] = (0, 200, 230)
HOTSPOT_CLASS = "TSR hotspot"


def label_colors(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """RGB (0-255) per label: the project's colour (`ldcsf.labels`) when known, else the next tab10 colour."""
    colors, extra = {}, 0
    for name in labels:
        known = project_labels.label_color(name)
        if known is not None:
            colors[name] = known
        else:
            from matplotlib import colormaps  # only for labels the project does not know: costs start-up

            palette = colormaps["tab10"].colors
            rgb = palette[(extra + 4) % len(palette)]  # skip tab10's first colours, close to ours
            colors[name] = tuple(int(round(255 * c)) for c in rgb[:3])
            extra += 1
    return colors


def hex_color(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
