"""Batched tile prediction of a slide, written to disk batch by batch so it can resume.

`Trainer.predict` runs the one `Predictor` (`predictor.py`) and does the device work: placement,
mixed precision, several devices or nodes (each gets a share of the tiles through Lightning's
distributed sampler). A `BasePredictionWriter` saves every finished batch as one small file in a parts folder; a rerun
predicts only the tiles no part file holds yet. Nothing is kept in memory per slide beyond one
batch, so memory stays flat however large the slide.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from ..utils.atomic import atomic_path, write_json_atomic
from ..utils.workers import leave_stop_signals_to_parent
from .tile_dataset import TileDataset
from ..inference.predictor import Predictor, prediction_trainer

#: The predictor's former name, kept for code that imports it from here.
TilePredictor = Predictor


class PredictionStore:
    """The parts folder of one slide: one .npz per predicted batch, plus the settings they belong to.

    Parts are only reused while the settings (slide, checkpoint, tiling) are the same; any change
    empties the folder so stale predictions never mix with new ones.
    """

    SETTINGS = "settings.json"

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def matches(self) -> bool:
        path = self.directory / self.SETTINGS
        try:
            return json.loads(path.read_text()) == self.fingerprint
        except (OSError, ValueError):
            return False

    def prepare(self) -> None:
        """Keep the parts when they were made with these settings; otherwise start afresh."""
        if not self.matches():
            self.clear()
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.directory / self.SETTINGS, self.fingerprint)

    def part_files(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.npz")) if self.matches() else []

    def write_batch(self, index: np.ndarray, probs: np.ndarray, rank: int, areas: np.ndarray | None = None,
                    member_probs: np.ndarray | None = None, member_areas: np.ndarray | None = None) -> None:
        name = f"part-r{rank:03d}-{int(index.min()):08d}-{len(index):05d}.npz"
        extra = {} if areas is None else {"areas": areas.astype(np.float16)}
        if member_probs is not None:
            extra["member_probs"] = member_probs.astype(np.float32)
        if member_areas is not None:
            extra["member_areas"] = member_areas.astype(np.float16)
        with atomic_path(self.directory / name) as tmp:
            np.savez(tmp, index=index, probs=probs, **extra)

    def done_indices(self) -> np.ndarray:
        done = [np.load(path)["index"] for path in self.part_files()]
        return np.unique(np.concatenate(done)) if done else np.zeros(0, dtype=np.int64)

    def collect(self, n_tiles: int, n_labels: int) -> np.ndarray:
        """(n_tiles, n_labels) probabilities; NaN where no part holds the tile."""
        probs = np.full((n_tiles, n_labels), np.nan, dtype=np.float32)
        for path in self.part_files():
            with np.load(path) as part:
                probs[part["index"]] = part["probs"]
        return probs

    def collect_areas(self, n_tiles: int, key: str = "areas") -> np.ndarray | None:
        """(n_tiles, n_labels, h, w) sub-tile area maps of a model with an area head, else None.

        `key`: "member_probs" (n_tiles, K, n_labels) or "member_areas" (n_tiles, K, n_labels, h, w) read
        an ensemble's per-member outputs the same way (None when the parts have none).
        """
        maps = None
        for path in self.part_files():
            with np.load(path) as part:
                if key not in part:
                    return None
                if maps is None:
                    maps = np.full((n_tiles, *part[key].shape[1:]), np.nan, dtype=np.float32)
                maps[part["index"]] = part[key]
        return maps

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class PartWriter(BasePredictionWriter):
    """Saves each finished batch to the store (what makes an interrupted slide resumable)."""

    def __init__(self, store: PredictionStore) -> None:
        super().__init__(write_interval="batch")
        self.store = store

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        optional = {key: None if prediction.get(key) is None else prediction[key].cpu().numpy()
                    for key in ("areas", "member_probs", "member_areas")}
        self.store.write_batch(prediction["index"].cpu().numpy(), prediction["probs"].cpu().numpy(),
                               rank=trainer.global_rank, **optional)


class RemainingTiles(L.LightningDataModule):
    """The tiles no part file holds yet, decided on every rank once the processes are connected."""

    def __init__(self, store: PredictionStore, make_dataset, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.store = store
        self.make_dataset = make_dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.dataset: TileDataset | None = None

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if self.trainer.is_global_zero:
            self.store.prepare()
        strategy.barrier("ldcsf-prepare-parts")
        self.dataset = self.make_dataset(self.store.done_indices())
        # Every rank must have listed the parts before any rank writes new ones.
        strategy.barrier("ldcsf-listed-parts")

    def predict_dataloader(self) -> DataLoader:
        # Tiles are read in slide order (row by row), so the reader's tile cache decodes each
        # TIFF tile about once; page-locked memory only helps copies to a GPU.
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.trainer.strategy.root_device.type == "cuda",
            worker_init_fn=leave_stop_signals_to_parent if self.num_workers else None,
        )


def make_trainer(store: PredictionStore, callbacks: Sequence[L.Callback] = (), **trainer_kwargs) -> L.Trainer:
    """A prediction Trainer (`predictor.prediction_trainer`) with the part writer first."""
    return prediction_trainer(callbacks=[PartWriter(store), *callbacks], **trainer_kwargs)


def predict_tiles(
    model: torch.nn.Module,
    store: PredictionStore,
    make_dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    tta: bool = False,
    members: bool = False,
    **trainer_kwargs,
) -> L.Trainer:
    """Predict every tile not yet in `store`; return the trainer (its ranks tell who merges).

    `make_dataset(done_indices)` builds the TileDataset of the tiles still to predict; `mean` and
    `std` normalise its [0, 1] RGB for the model (the checkpoint's); `members`: store an ensemble's
    per-member outputs too.
    """
    trainer = make_trainer(store, **trainer_kwargs)
    data = RemainingTiles(store, make_dataset, batch_size=batch_size, num_workers=num_workers)
    trainer.predict(Predictor(model, mean, std, tta=tta, members=members), datamodule=data, return_predictions=False)
    trainer.strategy.barrier("ldcsf-predicted")
    if data.dataset is not None:
        data.dataset.close()
    return trainer
