"""Checks on a slide before its tiles are predicted, each failing in one line that names the file.

They catch what would otherwise surface late or never: a µm/px typo making 2 px tiles and a
million of them, a slide smaller than one tile, a greyscale scan taken for "no tissue", and
labels with which a tumour-to-stroma ratio cannot be computed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..labels import STROMA_LABEL, TUMOR_LABEL

log = logging.getLogger(__name__)

#: A tile narrower than this at level 0 is upsampled from almost nothing: a wrong µm/px.
MIN_TILE_PX = 16
#: Nor may a tile be upsampled more than this to the model's input: a 224 px model sees 56 px
#: at least. Scans are made at or finer than the resolutions models are trained at, so more
#: means a µm/px wrong by a factor (a 4.99 for 0.499 gives 22 px tiles).
MAX_UPSAMPLING = 4
#: Above this many tiles a slide run is announced as large before it starts.
LARGE_TILE_COUNT = 100_000
#: Chroma (max - min of R, G, B) below which a thumbnail counts as having no colour.
GREY_CHROMA = 6
#: Pixels darker than this count as content rather than glass (glass is ~230-250).
GREY_CONTENT_BELOW = 200


def check_tile_size(slide_path: Path, tile_size: int, input_size: int, model_mpp: float, slide_mpp: float) -> None:
    if tile_size < max(MIN_TILE_PX, input_size / MAX_UPSAMPLING):
        raise ValueError(
            f"{slide_path}: tiles would be {tile_size} px at full resolution (the model's {input_size} px at "
            f"{model_mpp} µm/px on a slide at {slide_mpp} µm/px, at least {max(MIN_TILE_PX, round(input_size / MAX_UPSAMPLING))} px needed); "
            "the slide's µm/px looks wrong, check --mpp"
        )


def announce_tile_count(slide_id: str, n_tiles: int, tile_size: int) -> None:
    level = logging.WARNING if n_tiles > LARGE_TILE_COUNT else logging.INFO
    log.log(level, "%s: %d tiles of %d px to predict%s", slide_id, n_tiles, tile_size,
            " (a large run; check --mpp if this is unexpected)" if level == logging.WARNING else "")


def is_greyscale(thumbnail: Image.Image) -> bool:
    """True when the picture shows something (not bare glass) but has no colour: not an H&E stain."""
    rgb = np.asarray(thumbnail.convert("RGB"), dtype=np.int16)
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    shows_something = float((rgb.mean(axis=2) < GREY_CONTENT_BELOW).mean()) > 0.02
    return shows_something and float(np.percentile(chroma, 99)) < GREY_CHROMA


def no_tissue_message(slide_path: Path, dimensions: tuple[int, int], tile_size: int, min_tissue: float,
                      tissue_fraction: float, greyscale: bool) -> str:
    width, height = dimensions
    if greyscale:
        return f"{slide_path}: the slide has no colour (greyscale); ldcsf reads H&E-stained RGB scans"
    if width < tile_size or height < tile_size:
        return (f"{slide_path}: the slide ({width}x{height} px) is smaller than one tile ({tile_size}x{tile_size} px "
                "at its µm/px); check --mpp, or use a larger image")
    return (f"{slide_path}: no tissue found (no {tile_size}x{tile_size} px tile is at least {min_tissue:.0%} "
            f"tissue; tissue covers {tissue_fraction:.1%} of the slide)")


def check_tsr_labels(labels: Sequence[str], where: str, stroma_label: str = STROMA_LABEL, tumor_label: str = TUMOR_LABEL) -> None:
    """ValueError before any work when the labels cannot give a tumour-to-stroma ratio."""
    missing = [name for name in (stroma_label, tumor_label) if name not in labels]
    if missing:
        raise ValueError(
            f"{where}: labels {list(labels)} lack {' and '.join(map(repr, missing))}, so no tumour-to-stroma "
            "ratio can be computed; use a checkpoint trained with both labels"
        )
