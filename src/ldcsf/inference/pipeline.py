"""One slide, start to finish: tissue, tiles, predictions, tile table, outputs.

    run_slide("case1.svs", "model.pt", "runs/cohort/case1")

The slide's folder is complete once `tsr.json` exists (the export writes it last); such a slide
is skipped on a rerun when `inputs.json` shows it was made from the same slide, checkpoint and
settings, and refused otherwise (`fingerprint`). Predictions go to `<folder>/.parts/` batch by
batch while the slide runs, so an interrupted slide continues from its last complete batch; the
parts are removed once the outputs are written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..options import SlideSettings
from ..utils.paths import check_output_dir, safe_name
from ..wsi.readers import open_slide
from ..wsi.tiling import TileSpec, tile_grid
from ..wsi.tissue import detect_tissue
from .dataset import TileDataset
from .engine import PredictionStore, predict_tiles
from .fingerprint import claim_output, result_fingerprint
from .input_checks import announce_tile_count, check_tile_size, check_tsr_labels, is_greyscale, no_tissue_message
from .runtimes import check_runtime_device, runtime_model
from .split import settle_split

log = logging.getLogger(__name__)

PARTS_DIR = ".parts"
#: Thumbnail size used for tissue detection and for the pictures of the outputs.
THUMBNAIL_SIZE = 2048


class NoTissueError(ValueError):
    """The slide has no tile with enough tissue to predict."""


def slide_id_for(path: str | Path) -> str:
    """Output folder name of a slide: its file name without the format's ending(s), as a safe name.

    A DICOM slide (a folder of one series, or any file of it) is named by its container id,
    or else its series UID: the files themselves are named by instance UIDs.
    """
    from ..wsi.dicom import dicom_id_or_none

    dicom_id = dicom_id_or_none(Path(path))
    if dicom_id is not None:
        return safe_name(dicom_id)
    name = Path(path).name
    for ending in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(ending):
            return safe_name(name[: -len(ending)])
    return safe_name(Path(name).stem)


def is_complete(slide_dir: str | Path) -> bool:
    from ..export.slide_outputs import TSR_JSON

    return (Path(slide_dir) / TSR_JSON).is_file()


def run_slide(
    slide_path: str | Path,
    checkpoint: str | Path | LoadedCheckpoint,
    out_dir: str | Path,
    settings: SlideSettings | None = None,
    *,
    slide_id: str | None = None,
    callbacks: Sequence = (),
) -> dict:
    """Predict one slide into `out_dir` (its own folder); return its cohort.csv row.

    A slide whose folder is already complete is not redone (status "skipped", its earlier
    numbers). Raises ValueError / FileNotFoundError (one line) for an unreadable slide,
    a missing µm/px, or a slide without tissue (`NoTissueError`).

    Under a multi-process strategy (DDP) every process calls this; all predict their share
    and only global rank 0 writes the outputs (the others return an empty dict).
    """
    from ..export.slide_outputs import read_cohort_row, write_slide_outputs

    settings = settings or SlideSettings()
    slide_path = Path(slide_path)
    slide_id = slide_id or slide_id_for(slide_path)
    out_dir = check_output_dir(out_dir)
    if not slide_path.exists():
        raise FileNotFoundError(f"{slide_path}: slide not found")
    if not (slide_path.is_file() or slide_path.is_dir()):  # reading a pipe or device would block forever
        raise ValueError(f"{slide_path}: not a regular file (a pipe or device?); give the slide file itself")
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    check_runtime_device(settings.runtime, settings.accelerator)
    meta = loaded.meta
    check_tsr_labels(meta.labels, str(loaded.path))
    fingerprint = result_fingerprint(slide_path, loaded, settings)
    if claim_output(out_dir, fingerprint, finished=is_complete(out_dir), overwrite=settings.overwrite):
        return {**read_cohort_row(out_dir), "status": "skipped", "error": ""}

    with open_slide(slide_path, mpp=settings.mpp) as reader:
        slide_mpp = reader.require_mpp()
        dimensions = reader.dimensions
        thumbnail, downsample = reader.thumbnail(THUMBNAIL_SIZE)
    tissue = detect_tissue(thumbnail, downsample, slide_mpp)
    spec = TileSpec.for_model(meta.input_size, meta.mpp, slide_mpp, overlap=settings.overlap)
    check_tile_size(slide_path, spec.tile_size, meta.input_size, meta.mpp, slide_mpp)
    tiles = tile_grid(dimensions, spec, tissue, min_tissue=settings.min_tissue)
    if settings.limit_tiles is not None:
        tiles = tiles.head(settings.limit_tiles)
    if tiles.empty:
        raise NoTissueError(no_tissue_message(slide_path, dimensions, spec.tile_size, settings.min_tissue,
                                              tissue.fraction, is_greyscale(thumbnail)))
    announce_tile_count(slide_id, len(tiles), spec.tile_size)

    settle_split(settings, loaded, slide_path, tiles[["x", "y", "width", "height"]].to_numpy())
    run_settings = {
        "checkpoint": str(loaded.path),
        "model_name": meta.model_name,
        "model_code_version": meta.code_version,
        "code_version": __version__,
        "labels": list(meta.labels),
        "thresholds": list(meta.thresholds),
        "tile_size_px": meta.input_size,
        "tile_mpp": meta.mpp,
        "slide_mpp": slide_mpp,
        "tile_size_level0_px": spec.tile_size,
        "stride_level0_px": spec.stride,
        **{k: v for k, v in asdict(settings).items() if k not in ("mpp", "progress", "overwrite", "strict")},
    }
    stain_norm = stain_norm_for(meta, settings.stain_norm)
    run_settings["stain_norm"] = stain_norm
    store = PredictionStore(out_dir / PARTS_DIR, _fingerprint(slide_path, loaded, run_settings, len(tiles)))
    boxes = tiles[["x", "y", "width", "height"]].to_numpy()

    def make_dataset(done: np.ndarray) -> TileDataset:
        todo = np.setdiff1d(np.arange(len(tiles)), done)
        if len(done):
            log.info("%s: resuming, %d of %d tiles already predicted", slide_id, len(done), len(tiles))
        return TileDataset(slide_path, boxes[todo], todo, meta.input_size, mpp=settings.mpp,
                           interpolation=meta.interpolation, stain_norm=stain_norm)

    if len(store.done_indices()) < len(tiles):
        trainer = predict_tiles(
            runtime_model(loaded, settings.runtime), store, make_dataset, batch_size=settings.batch_size,
            num_workers=settings.num_workers, mean=meta.mean, std=meta.std, tta=settings.tta,
            accelerator=settings.accelerator, devices=settings.devices, strategy=settings.strategy,
            num_nodes=settings.num_nodes, precision=settings.precision, callbacks=callbacks,
            progress=settings.progress,
        )
        if not trainer.is_global_zero:
            return {}

    probs = store.collect(len(tiles), len(meta.labels))
    missing = int(np.isnan(probs).any(axis=1).sum())
    if missing:
        raise RuntimeError(f"{slide_path}: {missing} of {len(tiles)} tiles have no prediction; rerun to finish them")
    tiles = add_predictions(tiles, probs, meta.labels, meta.thresholds)
    area_maps = store.collect_areas(len(tiles))  # None unless the model has an area head
    if area_maps is not None:
        from ..analysis.areas import add_area_columns, own_cell_maps

        area_maps = own_cell_maps(area_maps, spec.tile_size, spec.stride)
        tiles = add_area_columns(tiles, area_maps, meta.labels)

    extra = {} if settings.field_diameter_um is None else {"field_diameter_um": settings.field_diameter_um}
    row = write_slide_outputs(
        out_dir, slide_id=slide_id, slide_path=str(slide_path), mpp=slide_mpp, dimensions=dimensions,
        tiles=tiles, labels=list(meta.labels), thresholds=list(meta.thresholds), thumbnail=thumbnail,
        thumbnail_downsample=downsample, settings=run_settings, area_maps=area_maps, **extra,
    )
    store.clear()  # the outputs are complete: the parts are no longer needed
    return row


def stain_norm_for(meta, override: str | None) -> dict | None:
    """The stain normalisation to apply: the checkpoint's, unless `override` says macenko or none."""
    if override in (None, ""):
        return meta.stain_norm
    if override == "none":
        return None
    if override != "macenko":
        raise ValueError(f"--stain-norm must be macenko or none, got {override!r}")
    if meta.stain_norm and meta.stain_norm.get("method") == "macenko":
        return meta.stain_norm  # the checkpoint's own reference
    from ..data.transforms import MacenkoNormalizer

    return MacenkoNormalizer().state()


def add_predictions(tiles: pd.DataFrame, probs: np.ndarray, labels: Sequence[str], thresholds: Sequence[float]) -> pd.DataFrame:
    """The tile table: geometry, then prob_<label> per label, then pred_<label> (prob >= threshold)."""
    tiles = tiles.copy()
    for i, label in enumerate(labels):
        tiles[f"prob_{label}"] = probs[:, i].astype(np.float64)
    for i, label in enumerate(labels):
        tiles[f"pred_{label}"] = (probs[:, i] >= thresholds[i]).astype(np.int64)
    return tiles


def _fingerprint(slide_path: Path, loaded: LoadedCheckpoint, run_settings: dict, n_tiles: int) -> dict:
    """What the saved batch predictions depend on: change any of it and they are redone."""
    def file_identity(path: Path) -> dict:
        stat = os.stat(path)
        return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    keep = ("labels", "tile_size_px", "tile_mpp", "slide_mpp", "tile_size_level0_px", "stride_level0_px",
            "min_tissue", "overlap", "limit_tiles", "tta", "stain_norm")
    return {
        "slide": file_identity(slide_path),
        "checkpoint": file_identity(loaded.path),
        "n_tiles": n_tiles,
        **{k: run_settings[k] for k in keep},
    }
