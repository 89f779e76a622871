"""The one predictor for Lightning: `BatchPredictor` as a LightningModule, and the Trainer that runs it.

`ldcsf slide` on several devices or nodes (or with mixed precision), `ldcsf evaluate` and
`ldcsf predict` run `Predictor` through Lightning's `Trainer.predict` (placement, mixed precision,
several devices or nodes); one process on one device runs `BatchPredictor` itself, without
Lightning's start-up (`ldcsf.wholeslide.tile_prediction`). What happens to the outputs is a
callback's job: slides write each batch to disk (`PartWriter`), data sets gather them in memory
(`gather.GatheredOutputs`).
"""

from __future__ import annotations

from typing import Sequence

import lightning as L

from ..options import lightning_precision
from .batch_predictor import BatchPredictor, ensemble_size, model_outputs  # noqa: F401 - imported from here too


class Predictor(BatchPredictor, L.LightningModule):
    """`BatchPredictor` for `Trainer.predict`: the same arithmetic, placed and scaled by Lightning."""

    def on_predict_start(self) -> None:
        self.prepare_for(self.device)


def prediction_trainer(
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str | None = None,
    callbacks: Sequence[L.Callback] = (),
    progress: bool = True,
    **trainer_kwargs,
) -> L.Trainer:
    """A Trainer for prediction only: no logger, no checkpoints, no model summary."""
    from ..utils.lightning_progress import progress_bar_callback

    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=lightning_precision(precision),
        callbacks=[*callbacks, *([progress_bar_callback()] if progress else [])],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        **trainer_kwargs,
    )
