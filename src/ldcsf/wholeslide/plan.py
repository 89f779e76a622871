"""The plan step of a slide run: open the slide, find its tissue and lay out the tiles to predict.

    plan = plan_slide("case1.svs", loaded.meta, SlideSettings())
    plan.tiles       # the tile grid (geometry and tissue columns of the tile table)

Nothing is predicted here. The plan also says what the saved batch predictions depend on
(`parts_fingerprint`) and what is recorded with the results (`recorded_settings`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import __version__
from ..wsi.formats import check_slide_path  # noqa: F401 - also imported from here
from ..wsi.readers import open_slide
from ..wsi.slide_info import MPP_FROM_FILE, MPP_FROM_OVERRIDE
from ..wsi.tiling import TileSpec, tile_grid
from ..wsi.tissue import TissueMask, detect_tissue
from .input_checks import announce_tile_count, check_tile_size, is_greyscale, no_tissue_message

log = logging.getLogger(__name__)

#: Thumbnail size used for tissue detection and for the pictures of the outputs.
THUMBNAIL_SIZE = 2048
#: SlideSettings fields that say how a run is conducted, not what it computes: not recorded.
UNRECORDED_SETTINGS = ("mpp", "progress", "overwrite", "strict", "pictures", "outputs")  # tsr.json lists its files


class NoTissueError(ValueError):
    """The slide has no tile with enough tissue to predict."""


@dataclass(frozen=True)
class SlidePlan:
    """One slide, opened and tiled: everything needed to predict it and to draw its results."""

    slide_path: Path
    slide_id: str
    mpp: float  # µm per level-0 pixel (the slide's, or the --mpp override)
    dimensions: tuple[int, int]  # level-0 (width, height)
    thumbnail: Image.Image
    thumbnail_downsample: float  # level-0 pixels per thumbnail pixel
    tissue: TissueMask
    spec: TileSpec
    tiles: pd.DataFrame  # the tile grid, one row per tile to predict (never empty)
    header_mpp: float | None = None  # the file's own µm/px, recorded beside an --mpp that replaced it

    @property
    def boxes(self) -> np.ndarray:
        """(tiles, 4) level-0 x, y, width, height of every tile."""
        return self.tiles[["x", "y", "width", "height"]].to_numpy()


def plan_slide(slide_path: str | Path, meta, settings, slide_id: str) -> SlidePlan:
    """Read the slide's µm/px and thumbnail, detect tissue and lay out the tiles.

    `meta` is the checkpoint's meta (input size and µm/px), `settings` a SlideSettings (mpp
    override, overlap, min_tissue, limit_tiles). Raises ValueError (one line) for a missing
    µm/px or implausible tile size, and `NoTissueError` when no tile has enough tissue.
    """
    slide_path = Path(slide_path)
    with open_slide(slide_path, mpp=settings.mpp) as reader:
        slide_mpp, header_mpp = reader.require_mpp(), reader.file_mpp
        for warning in reader.check_resolution():  # raises when the header contradicts itself 3x or more
            log.warning("%s", warning)
        dimensions = reader.dimensions
        thumbnail, downsample = reader.thumbnail(THUMBNAIL_SIZE)
    tissue = detect_tissue(thumbnail, downsample, slide_mpp)
    model_input = meta.input_spec  # tiles of its size at its µm/px, cut from a slide at slide_mpp
    spec = TileSpec.for_model(model_input.size, model_input.mpp, slide_mpp, overlap=settings.overlap)
    check_tile_size(slide_path, spec.tile_size, model_input.size, model_input.mpp, slide_mpp)
    tiles = tile_grid(dimensions, spec, tissue, min_tissue=settings.min_tissue)
    if settings.limit_tiles is not None:
        tiles = tiles.head(settings.limit_tiles)
    if tiles.empty:
        raise NoTissueError(no_tissue_message(slide_path, dimensions, spec.tile_size, settings.min_tissue,
                                              tissue.fraction, is_greyscale(thumbnail)))
    announce_tile_count(slide_id, len(tiles), spec.tile_size)
    return SlidePlan(slide_path=slide_path, slide_id=slide_id, mpp=slide_mpp, dimensions=tuple(dimensions),
                     thumbnail=thumbnail, thumbnail_downsample=downsample, tissue=tissue, spec=spec, tiles=tiles,
                     header_mpp=header_mpp)


def recorded_settings(plan: SlidePlan, loaded, settings, stain_norm: dict | None) -> dict:
    """What produced the predictions, as written into tsr.json and the report (keys in this order)."""
    meta = loaded.meta
    return {
        "checkpoint": str(loaded.path),
        "model_name": meta.model_name,
        "model_code_version": meta.code_version,
        "code_version": __version__,
        "labels": list(meta.labels),
        "thresholds": list(meta.thresholds),
        "tile_size_px": meta.input_size,
        "tile_mpp": meta.mpp,
        "slide_mpp": plan.mpp,
        # A TSR moves with the scale (docs/results.md, "A wrong µm/px"): say whose µm/px it is.
        "slide_mpp_source": MPP_FROM_FILE if settings.mpp is None else MPP_FROM_OVERRIDE,
        "header_mpp": plan.header_mpp,
        "tile_size_level0_px": plan.spec.tile_size,
        "stride_level0_px": plan.spec.stride,
        **{k: v for k, v in asdict(settings).items() if k not in UNRECORDED_SETTINGS},
        "stain_norm": stain_norm,
    }


def parts_fingerprint(plan: SlidePlan, loaded, settings, stain_norm: dict | None) -> dict:
    """What the saved batch predictions (`<slide folder>/.parts/`) depend on: change any of it and
    they are redone. The content is that of earlier versions, so their parts still resume."""
    meta = loaded.meta
    return {
        "slide": _file_identity(plan.slide_path),
        "checkpoint": _file_identity(loaded.path),
        "n_tiles": len(plan.tiles),
        "labels": list(meta.labels),
        "tile_size_px": meta.input_size,
        "tile_mpp": meta.mpp,
        "slide_mpp": plan.mpp,
        "tile_size_level0_px": plan.spec.tile_size,
        "stride_level0_px": plan.spec.stride,
        "min_tissue": settings.min_tissue,
        "overlap": settings.overlap,
        "limit_tiles": settings.limit_tiles,
        "tta": settings.tta,
        "stain_norm": stain_norm,
    }


def _file_identity(path: Path) -> dict:
    stat = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
