"""The predict step of a slide run: the planned tiles through the model, into the tile table.

Predictions go to a `PredictionStore` (the slide's `.parts/` folder) batch by batch, so an
interrupted slide continues from its last complete batch; this step reads them back into the
tile table (prob_/pred_ columns, and area_ columns with the own-cell sub-tile maps of a model
with an area head), and an ensemble's members into one such table each (for the TSR interval).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..analysis.areas import add_area_columns, own_cell_maps
from ..models.input_spec import InputSpec
from .onnx_prediction import predict_on_session, torch_free_export
from .plan import SlidePlan
from .prediction_store import PredictionStore
from .slide_tiles import SlideTiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlidePredictions:
    """The tile table of a predicted slide, and its sub-tile area maps (a model with an area head)."""

    tiles: pd.DataFrame  # the plan's tiles with prob_<label>, pred_<label> (and area_<label>) columns
    labels: list[str]
    thresholds: list[float]
    area_maps: np.ndarray | None = None  # (tiles, labels, h, w) of each tile's own cell
    #: an ensemble's members, each as its own tile table (same tiles, its prob_/pred_/area_ columns)
    member_tiles: list[pd.DataFrame] | None = None


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


def predict_slide(plan: SlidePlan, loaded, settings, store: PredictionStore, stain_norm: dict | None, *,
                  callbacks: Sequence = ()) -> SlidePredictions | None:
    """Predict the plan's tiles not yet in `store`, then read all of them back as the tile table.

    Returns None on the processes of a multi-process strategy (DDP) other than global rank 0:
    they predict their share, rank 0 reads the parts. RuntimeError (one line) when a tile has
    no prediction after the run.
    """
    meta = loaded.meta
    # The checkpoint's input, with the stain normalisation this run applies (--stain-norm may change it).
    input_spec = replace(meta.input_spec, stain_norm=stain_norm)
    n_tiles = len(plan.tiles)
    n_todo = n_tiles - len(store.done_indices())
    exported = None if callbacks else torch_free_export(loaded, settings, input_spec, n_todo)
    if n_todo and exported is not None:
        tiles = _dataset_maker(plan, input_spec, settings, SlideTiles)(store.done_indices())
        predict_on_session(exported, store, tiles, input_spec, settings.batch_size, threads=settings.threads,
                           progress=settings.progress)
    elif n_todo:
        from ..inference.runtimes import runtime_model
        from .tile_dataset import TileDataset
        from .tile_prediction import predict_tiles

        holds_results = predict_tiles(
            runtime_model(loaded, settings.runtime), store, _dataset_maker(plan, input_spec, settings, TileDataset),
            batch_size=settings.batch_size, num_workers=settings.num_workers, mean=input_spec.mean, std=input_spec.std,
            tta=settings.tta, accelerator=settings.accelerator, devices=settings.devices,
            strategy=settings.strategy, num_nodes=settings.num_nodes, precision=settings.precision,
            callbacks=callbacks, progress=settings.progress, members=True,
        )
        if not holds_results:
            return None

    probs = store.collect(n_tiles, len(meta.labels))
    missing = int(np.isnan(probs).any(axis=1).sum())
    if missing:
        raise RuntimeError(f"{plan.slide_path}: {missing} of {n_tiles} tiles have no prediction; rerun to finish them")
    tiles = add_predictions(plan.tiles, probs, meta.labels, meta.thresholds)
    area_maps = store.collect_areas(n_tiles)  # None unless the model has an area head
    if area_maps is not None:
        area_maps = own_cell_maps(area_maps, plan.spec.tile_size, plan.spec.stride)
        tiles = add_area_columns(tiles, area_maps, meta.labels)
    return SlidePredictions(tiles=tiles, labels=list(meta.labels), thresholds=[float(t) for t in meta.thresholds],
                            area_maps=area_maps, member_tiles=member_tables(plan, store, meta))


def member_tables(plan: SlidePlan, store: PredictionStore, meta) -> list[pd.DataFrame] | None:
    """Each ensemble member's tile table, built as the slide's own; None without members in the parts."""
    n_tiles = len(plan.tiles)
    probs = store.collect_areas(n_tiles, key="member_probs")
    if probs is None:
        return None
    areas = store.collect_areas(n_tiles, key="member_areas")
    tables = []
    for k in range(probs.shape[1]):
        table = add_predictions(plan.tiles, probs[:, k], meta.labels, meta.thresholds)
        if areas is not None:
            table = add_area_columns(table, own_cell_maps(areas[:, k], plan.spec.tile_size, plan.spec.stride),
                                     meta.labels)
        tables.append(table)
    return tables


def _dataset_maker(plan: SlidePlan, input_spec: InputSpec, settings, kind: type[SlideTiles]):
    """`make_dataset(done)` for `predict_tiles`: the tiles no part holds yet, as `kind` (a TileDataset
    for torch, plain `SlideTiles` for the torch-free path)."""
    boxes = plan.boxes

    def make_dataset(done: np.ndarray) -> SlideTiles:
        todo = np.setdiff1d(np.arange(len(boxes)), done)
        if len(done):
            log.info("%s: resuming, %d of %d tiles already predicted", plan.slide_id, len(done), len(boxes))
        return kind.for_input(plan.slide_path, boxes[todo], todo, input_spec, slide_mpp=settings.mpp)

    return make_dataset


def add_predictions(tiles: pd.DataFrame, probs: np.ndarray, labels: Sequence[str], thresholds: Sequence[float]) -> pd.DataFrame:
    """The tile table: geometry, then prob_<label> per label, then pred_<label> (prob >= threshold)."""
    tiles = tiles.copy()
    for i, label in enumerate(labels):
        tiles[f"prob_{label}"] = probs[:, i].astype(np.float64)
    for i, label in enumerate(labels):
        tiles[f"pred_{label}"] = (probs[:, i] >= thresholds[i]).astype(np.int64)
    return tiles
