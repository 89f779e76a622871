"""The tiles of a slide through Lightning's `Trainer.predict`: several devices or nodes, mixed precision, callbacks.

Each process gets a share of the tiles through Lightning's distributed sampler; `PartWriter` saves
every finished batch to the slide's `PredictionStore`. One process on one device in full precision
skips all of this (`tile_prediction.predict_in_process`): Lightning's start-up is most of a small
slide's prediction time on a CPU.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from ..inference.predictor import Predictor, prediction_trainer
from ..utils.signals import stop_at_batch_end_callback
from ..utils.workers import leave_stop_signals_to_parent
from .tile_dataset import TileDataset
from .prediction_store import PredictionStore


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
    """A prediction Trainer (`predictor.prediction_trainer`) with the part writer first, and a stop
    signal held to the end of the batch in progress (`utils.signals`)."""
    return prediction_trainer(callbacks=[PartWriter(store), *callbacks, stop_at_batch_end_callback()],
                              **trainer_kwargs)


def predict_tiles_with_trainer(
    model: torch.nn.Module,
    store: PredictionStore,
    make_dataset,
    batch_size: int,
    num_workers: int,
    mean: Sequence[float],
    std: Sequence[float],
    tta: bool,
    members: bool,
    **trainer_kwargs,
) -> bool:
    """`tile_prediction.predict_tiles` through Lightning; True on the process that holds the results (global rank 0)."""
    trainer = make_trainer(store, **trainer_kwargs)
    data = RemainingTiles(store, make_dataset, batch_size=batch_size, num_workers=num_workers)
    trainer.predict(Predictor(model, mean, std, tta=tta, members=members), datamodule=data, return_predictions=False)
    trainer.strategy.barrier("ldcsf-predicted")
    if data.dataset is not None:
        data.dataset.close()
    return trainer.is_global_zero
