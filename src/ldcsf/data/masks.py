"""Tiles with labels from pixel masks (e.g. WSSS4LUAD: palette PNG, 0 tumour, 1 stroma, 2 normal, 3 background).

Each image is cut into tiles of a chosen size and stride; a tile's label is present when the
label's pixel fraction of the tile reaches `present_at` (default 5 %), absent when it is below
`absent_below` (default 1 %), and left blank (not annotated) in between: hand-drawn mask borders
are a few pixels off, so a sliver of a class at a tile edge is neither a trustworthy positive nor
a trustworthy negative. Tiles whose background fraction exceeds `max_background` are skipped.
The per-class pixel fractions are kept as `frac_<class>` columns (a ground truth for TSR).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from ..utils.progress import tqdm  # bars in a terminal, lines in a log

from ..labels import resolve_label
from ..utils.atomic import atomic_path
from .dataset import load_rgb
from .importers import list_images
from .manifest import default_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskScheme:
    """What the pixel values of a mask mean: value -> class name, class name -> project label."""

    classes: dict[int, str]
    label_of: dict[str, str]
    background: str = "background"
    #: Pixel value of "nobody annotated this pixel" (a QuPath export's gaps between regions): such
    #: pixels are left out of the area targets rather than read as any class.
    unannotated: int | None = None

    @classmethod
    def from_classes(cls, classes: dict[int, str], background: str = "background", **kwargs) -> "MaskScheme":
        """A scheme whose class names are the project's labels or their synonyms (`ldcsf.labels`)."""
        label_of = {name: resolve_label(name) for name in classes.values() if name != background}
        return cls(classes=classes, label_of=label_of, background=background, **kwargs)

    @property
    def fraction_columns(self) -> list[str]:
        return [f"frac_{name}" for name in self.classes.values()]


#: Mask value of unannotated pixels (WSSS4LUAD masks never hold it; `ldcsf data qupath` masks do).
UNANNOTATED = 255

#: WSSS4LUAD palette masks. Necrosis is not annotated there, so it stays blank.
WSSS4LUAD = MaskScheme.from_classes({0: "tumor", 1: "stroma", 2: "normal", 3: "background"}, unannotated=UNANNOTATED)


def read_mask(path: str | Path) -> np.ndarray:
    """Class-index array (H, W) from a palette ('P') or greyscale ('L') PNG."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(f"{path}: mask must be a palette or greyscale image of class indices, not mode {image.mode}")
            return np.asarray(image, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: mask not found") from None
    except OSError as err:
        raise ValueError(f"{path}: unreadable mask ({err})") from None


def mask_fractions(mask: np.ndarray, scheme: MaskScheme = WSSS4LUAD) -> dict[str, float]:
    """Fraction of the tile's pixels per class; values outside the scheme are an error."""
    counts = np.bincount(mask.ravel(), minlength=256)
    unknown = [int(v) for v in np.flatnonzero(counts) if int(v) not in scheme.classes]
    if unknown:
        raise ValueError(f"mask values {unknown} are not in the scheme {scheme.classes}")
    return {name: counts[value] / mask.size for value, name in scheme.classes.items()}


def labels_from_fractions(
    fractions: dict[str, float],
    scheme: MaskScheme,
    labels: Sequence[str],
    present_at: float = 0.05,
    absent_below: float = 0.01,
) -> dict[str, float]:
    """1 if the label's fraction >= present_at, 0 if < absent_below, NaN in between or unmapped."""
    out = {label: np.nan for label in labels}
    for name, label in scheme.label_of.items():
        f = fractions[name]
        out[label] = 1.0 if f >= present_at else 0.0 if f < absent_below else np.nan
    return out


def tile_positions(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering [0, length): a regular grid plus one flush with the far edge."""
    if length < tile:
        return []
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_masks(
    image_dir: str | Path,
    mask_dir: str | Path,
    out_dir: str | Path,
    tile_size: int = 224,
    stride: int | None = None,
    present_at: float = 0.05,
    absent_below: float = 0.01,
    max_background: float = 0.5,
    background_mask_dir: str | Path | None = None,
    scheme: MaskScheme = WSSS4LUAD,
    labels: Sequence[str] | None = None,
    group_prefix: str = "",
    dataset: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Cut every image that has a mask (same file stem) into labelled tiles written as PNG.

    Tiles go to `out_dir/tiles/`, their mask crops to `out_dir/masks/` (the manifest's `mask`
    column). A tile already on disk is not written again, so an interrupted run resumes.
    `background_mask_dir` holds optional masks (non-zero = background) merged into the
    scheme's background class.
    """
    if not 0 <= absent_below <= present_at <= 1:
        raise ValueError(f"need 0 <= absent_below ({absent_below}) <= present_at ({present_at}) <= 1")
    stride = stride or tile_size
    labels = list(labels) if labels is not None else list(default_labels())
    labels += [lab for lab in scheme.label_of.values() if lab not in labels]
    out_dir = Path(out_dir)
    tiles_dir, masks_dir = out_dir / "tiles", out_dir / "masks"
    images = {p.stem: p for p in list_images(image_dir, recursive=False)}
    masks = list_images(mask_dir, recursive=False)
    if not masks:
        raise ValueError(f"{mask_dir}: no mask images found")
    without_image = [m.name for m in masks if m.stem not in images]
    if without_image:
        log.info("%s: %d mask(s) without an image skipped: %s", mask_dir, len(without_image), ", ".join(without_image[:8]))
    background_index = {v: k for k, v in scheme.classes.items()}[scheme.background]
    rows, too_small, mostly_background = [], 0, 0
    for mask_path in tqdm([m for m in masks if m.stem in images], desc="cutting mask tiles", unit="image", disable=not progress):
        image_path = images[mask_path.stem]
        image = np.asarray(load_rgb(image_path))
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} px but {image_path.name} is "
                             f"{image.shape[1]}x{image.shape[0]} px")
        if background_mask_dir is not None:
            extra = read_mask(Path(background_mask_dir) / mask_path.name)
            if extra.shape != mask.shape:
                raise ValueError(f"{Path(background_mask_dir) / mask_path.name}: background mask size differs from {mask_path}")
            mask = np.where(extra > 0, np.uint8(background_index), mask)
        ys, xs = tile_positions(mask.shape[0], tile_size, stride), tile_positions(mask.shape[1], tile_size, stride)
        if not ys or not xs:
            too_small += 1
        for y in ys:
            for x in xs:
                crop = mask[y:y + tile_size, x:x + tile_size]
                fractions = mask_fractions(crop, scheme)
                if fractions[scheme.background] > max_background:
                    mostly_background += 1
                    continue
                name = f"{mask_path.stem}_y{y}_x{x}.png"
                tile_path, tile_mask_path = tiles_dir / name, masks_dir / name
                _save_png(image[y:y + tile_size, x:x + tile_size], tile_path)
                _save_png(crop, tile_mask_path, palette_from=mask_path)
                row = {"path": str(tile_path.resolve()), "mask": str(tile_mask_path.resolve())}
                if dataset is not None:
                    row["dataset"] = dataset
                row |= {"source_image": str(image_path.resolve()), "x": x, "y": y}
                row |= {f"frac_{k}": round(float(v), 6) for k, v in fractions.items()}
                row |= labels_from_fractions(fractions, scheme, labels, present_at, absent_below)
                row["group"] = group_prefix + mask_path.stem
                rows.append(row)
    if too_small:
        log.info("%d image(s) smaller than %d px skipped", too_small, tile_size)
    log.info("%d tile(s) kept, %d skipped as more than %.0f%% background", len(rows), mostly_background, 100 * max_background)
    frame = pd.DataFrame(rows)
    for label in labels:
        if label in frame.columns:
            frame[label] = frame[label].astype("float32")
    return frame


def _save_png(array: np.ndarray, path: Path, palette_from: Path | None = None) -> None:
    if path.is_file():
        return  # written by an earlier, interrupted run (atomic writes: never half a file)
    image = Image.fromarray(array)
    if palette_from is not None:
        with Image.open(palette_from) as source:
            if source.mode == "P":
                image.putpalette(source.getpalette())  # L -> P, indices unchanged
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)  # speed over size: tiles are many and small
