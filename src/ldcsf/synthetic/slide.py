"""A synthetic whole slide with a known ground truth: pyramidal TIFF + its class map.

    slide = make_slide("runs/demo/synthetic_slide.tiff", size=(4096, 4096), stroma_fraction=0.4)
    slide.tsr, slide.stroma_fraction   # the truth a TSR pipeline should recover

Numbers follow the slide pipeline's definitions (`ldcsf.analysis.tsr`): stroma fraction =
stroma / (stroma + tumour) and TSR = tumour / stroma, both from pixel areas; a layout class
counts as the label it stands for (`ldcsf.labels`): necrosis and normal tissue count in neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..labels import STROMA_LABEL, TUMOR_LABEL, resolve_label
from ..utils.atomic import atomic_path, write_json_atomic
from ..wsi.writer import write_pyramidal_tiff
from .layout import BACKGROUND, CLASSES, class_pixel_counts, colour_layout, make_layout
from .render import render_he


@dataclass
class SyntheticSlide:
    """A generated slide and its truth (`layout` is the level-0 class map, see `layout.CLASSES`)."""

    path: Path
    mpp: float
    layout: np.ndarray = field(repr=False)
    layout_path: Path
    stroma_fraction: float  # stroma / (stroma + tumour)
    tsr: float  # tumour / stroma
    class_pixels: dict[str, int]

    def truth(self) -> dict:
        """JSON-ready summary (what `truth.json` beside the slide holds)."""
        return {"slide": self.path.name, "mpp": self.mpp, "width": int(self.layout.shape[1]),
                "height": int(self.layout.shape[0]), "stroma_fraction": self.stroma_fraction, "tsr": self.tsr,
                "class_pixels": self.class_pixels, "layout": self.layout_path.name, "classes": list(CLASSES)}


def make_slide(
    path: str | Path,
    size: tuple[int, int] = (4096, 4096),
    mpp: float = 0.5,
    seed: int = 0,
    stroma_fraction: float = 0.4,
    necrosis_fraction: float = 0.05,
    normal_fraction: float = 0.15,
) -> SyntheticSlide:
    """Generate, render and write one slide of `size` (width, height) px at `mpp` µm/px.

    `stroma_fraction` is stroma / (stroma + tumour), the pathologist's stroma percentage;
    necrosis and normal fractions are of the whole tissue. Beside the slide go
    `<name>.layout.png` (class indices 0..4 as grey levels), `<name>.layout_colour.png`
    (for looking at) and `<name>.truth.json`.
    """
    width, height = (int(v) for v in size)
    if not 0.0 <= stroma_fraction <= 1.0:
        raise ValueError(f"stroma_fraction {stroma_fraction}: must be between 0 and 1")
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"{path}: a synthetic slide is a pyramidal TIFF; use a .tif or .tiff name")
    tumor_and_stroma = 1.0 - necrosis_fraction - normal_fraction
    layout = make_layout(height, width, seed=seed, mpp=mpp, stroma_fraction=stroma_fraction * tumor_and_stroma,
                         necrosis_fraction=necrosis_fraction, normal_fraction=normal_fraction)
    rgb = render_he(layout, seed=seed, mpp=mpp)
    write_pyramidal_tiff(path, rgb, mpp=mpp)

    stem = path.name.rsplit(".", 1)[0]
    layout_path = path.with_name(f"{stem}.layout.png")
    _save_png(layout_path, layout)
    _save_png(path.with_name(f"{stem}.layout_colour.png"), colour_layout(layout))
    counts = class_pixel_counts(layout)
    tissue = [name for name in CLASSES if name != CLASSES[BACKGROUND]]
    stroma, tumor = (sum(counts[name] for name in tissue if resolve_label(name) == label)
                     for label in (STROMA_LABEL, TUMOR_LABEL))
    slide = SyntheticSlide(
        path=path, mpp=float(mpp), layout=layout, layout_path=layout_path,
        stroma_fraction=stroma / (stroma + tumor) if stroma + tumor else float("nan"),
        tsr=tumor / stroma if stroma else float("inf"), class_pixels=counts,
    )
    write_json_atomic(path.with_name(f"{stem}.truth.json"), slide.truth())
    return slide


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
