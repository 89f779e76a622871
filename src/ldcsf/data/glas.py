"""GlaS (Warwick-QU) colon images as a pixel-mask source: binary gland masks turned into the
project's class masks, resampled to the tile scale and cut into area-labelled tiles.

The source mask says only gland (255: epithelium with its lumen) or not (0). The rule here:

    malignant image, gland      -> tumour      (WSSS4LUAD index 0)
    benign image, gland         -> normal      (index 2, the project's non_tumor)
    any image, not gland        -> stroma      (index 1: tumour stroma or lamina propria)
    unstained, either side      -> background  (index 3: lumen, mucus, glass)

"Unstained" is pale and bright after a small box blur: HSV saturation below
`UNSTAINED_SATURATION` and value above `UNSTAINED_VALUE`. Neither lumen, mucus nor glass takes
eosin or haematoxylin, so they would otherwise be counted as stroma (outside the gland) or as
epithelium (lumen inside it). The masks are then in the WSSS4LUAD palette, so tiling
(`data.masks.tile_masks`) and area targets (`data.area_targets.cell_fractions`) read them unchanged.

Images are resampled from the source's 0.62 µm/px to `TILE_MPP` (the field the models are
trained at: 128 px = 112 µm), the image by area averaging, the mask by nearest neighbour. Another
`tile_mpp` cuts the same 128 px tiles over another field (1.75 µm/px: 224 µm, for a model that
decides on more context); with `tile_size` too, the same field from finer pixels (224 px at
0.5 µm/px, for a model with a larger input).
Tiles are grouped by patient (`glas:patient-<id>`): GlaS train and testA share patients.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from ..utils.atomic import atomic_path
from ..wsi.tissue import saturation_value
from .masks import WSSS4LUAD, tile_masks

log = logging.getLogger(__name__)

#: The source's scanner resolution (GlaS challenge page: Zeiss MIRAX MIDI, 20x).
SOURCE_MPP = 0.62005
#: The scale tiles are cut at: the pretrained backbone's 128 px input spans 112 µm.
TILE_MPP = 0.875
TILE_SIZE = 128
#: Unstained = smoothed saturation below this and brightness above UNSTAINED_VALUE. Chosen by
#: eye on benign and malignant images (lumen, goblet-cell mucin, glass turn unstained; pale
#: lamina propria stays stained); docs/data.md gives the share it removes.
UNSTAINED_SATURATION = 0.10
UNSTAINED_VALUE = 0.70
SMOOTH_PX = 5  # box blur (source px): one pale pixel between nuclei is not a lumen

TUMOR, STROMA, NORMAL, BACKGROUND = 0, 1, 2, 3  # WSSS4LUAD palette indices
GROUP_PREFIX = "glas:patient-"
MANIFEST_COLUMNS = ("image", "mask", "patient_id", "glas_grade")


@dataclass(frozen=True)
class PreparedImage:
    """One GlaS image after resampling, and what the unstained rule removed from it."""

    name: str
    patient_id: int
    grade: str
    image: Path
    mask: Path
    removed_outside_gland: float  # share of the non-gland area called unstained (not stroma)
    removed_inside_gland: float  # share of the gland area called unstained (lumen, mucin)


def read_glas_manifest(folder: str | Path) -> pd.DataFrame:
    """The source's manifest.csv, checked: the columns the rule needs, a known grade per row."""
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GlaS manifest not found (expected one row per image with {', '.join(MANIFEST_COLUMNS)})")
    frame = pd.read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    bad = frame[~frame["glas_grade"].isin(["benign", "malignant"])]
    if len(bad):
        raise ValueError(f"{path}: row {int(bad.index[0]) + 2} has grade {bad['glas_grade'].iloc[0]!r}, "
                         "expected benign or malignant")
    return frame


def unstained(rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W): pixels that took no stain (lumen, mucus, glass)."""
    saturation, value = saturation_value(rgb)
    saturation = ndimage.uniform_filter(saturation, SMOOTH_PX)
    value = ndimage.uniform_filter(value, SMOOTH_PX)
    return (saturation < UNSTAINED_SATURATION) & (value > UNSTAINED_VALUE)


def class_mask(gland: np.ndarray, pale: np.ndarray, malignant: bool) -> np.ndarray:
    """uint8 (H, W) class indices in the WSSS4LUAD palette from a gland mask and an unstained mask."""
    out = np.where(gland, np.uint8(TUMOR if malignant else NORMAL), np.uint8(STROMA))
    out[pale] = BACKGROUND
    return out


def resample(rgb: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The image (area averaging) and its class mask (nearest neighbour) scaled by `scale`."""
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    image = Image.fromarray(rgb).resize(size, Image.Resampling.BOX)
    labels = Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image), np.asarray(labels)


def prepare_glas(folder: str | Path, out_dir: str | Path, tile_mpp: float = TILE_MPP) -> list[PreparedImage]:
    """Write each image resampled to `tile_mpp` (`out_dir/img/`) and its class mask (`out_dir/mask/`).

    Files already written are kept (a rerun resumes), so one `out_dir` holds one `tile_mpp`;
    the removed shares are computed again.
    """
    if not tile_mpp > 0:
        raise ValueError(f"{folder}: GlaS tile µm/px must be positive, got {tile_mpp}")
    folder, out_dir = Path(folder), Path(out_dir)
    frame = read_glas_manifest(folder)
    prepared = []
    for row in frame.itertuples(index=False):
        image_path, mask_path = folder / row.image, folder / row.mask
        with Image.open(image_path) as image:
            rgb = np.asarray(image.convert("RGB"))
        try:
            with Image.open(mask_path) as image:
                gland = np.asarray(image.convert("L")) > 0
        except FileNotFoundError:
            raise FileNotFoundError(f"{mask_path}: mask of {image_path.name} not found") from None
        if gland.shape != rgb.shape[:2]:
            raise ValueError(f"{mask_path}: mask is {gland.shape[1]}x{gland.shape[0]} px but {image_path.name} is "
                             f"{rgb.shape[1]}x{rgb.shape[0]} px")
        pale = unstained(rgb)
        classes = class_mask(gland, pale, row.glas_grade == "malignant")
        small_rgb, small_mask = resample(rgb, classes, SOURCE_MPP / tile_mpp)
        name = Path(row.image).stem
        out_image, out_mask = out_dir / "img" / f"{name}.png", out_dir / "mask" / f"{name}.png"
        _write_png(small_rgb, out_image)
        _write_png(small_mask, out_mask, palette=True)
        prepared.append(PreparedImage(
            name=name, patient_id=int(row.patient_id), grade=row.glas_grade, image=out_image, mask=out_mask,
            removed_outside_gland=float(pale[~gland].mean()) if (~gland).any() else 0.0,
            removed_inside_gland=float(pale[gland].mean()) if gland.any() else 0.0))
    return prepared


def glas_tiles(folder: str | Path, out_dir: str | Path, labels: Sequence[str], tile_size: int = TILE_SIZE,
               progress: bool = True, tile_mpp: float = TILE_MPP) -> pd.DataFrame:
    """Manifest rows of the GlaS tiles (written under `out_dir`), grouped by patient.

    Tiles are `tile_size` px at `tile_mpp` µm/px. Besides the WSSS4LUAD-style columns (`frac_*`,
    labels from the mask), each row carries the image's `patient_id` and `glas_grade`.
    """
    out_dir = Path(out_dir)
    prepared = {p.name: p for p in prepare_glas(folder, out_dir / "resampled", tile_mpp=tile_mpp)}
    frame = tile_masks(out_dir / "resampled" / "img", out_dir / "resampled" / "mask", out_dir, tile_size=tile_size,
                       scheme=WSSS4LUAD, labels=labels, progress=progress)
    stems = frame["source_image"].map(lambda p: Path(p).stem)
    frame["patient_id"] = stems.map(lambda s: prepared[s].patient_id)
    frame["glas_grade"] = stems.map(lambda s: prepared[s].grade)
    frame["group"] = GROUP_PREFIX + frame["patient_id"].astype(str)
    return frame


def removed_shares(prepared: Sequence[PreparedImage]) -> pd.DataFrame:
    """Mean share of the non-gland and the gland area the unstained rule removes, per grade."""
    frame = pd.DataFrame([{"grade": p.grade, "outside_gland": p.removed_outside_gland,
                           "inside_gland": p.removed_inside_gland} for p in prepared])
    return frame.groupby("grade")[["outside_gland", "inside_gland"]].agg(["mean", "median", "max"])


def _write_png(array: np.ndarray, path: Path, palette: bool = False) -> None:
    if path.is_file():
        return
    image = Image.fromarray(array)
    if palette:  # L -> P, indices unchanged; the colours only make a mask readable in any viewer
        image.putpalette([205, 51, 51, 0, 255, 0, 65, 105, 225, 255, 255, 255] + [0, 0, 0] * 252)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
