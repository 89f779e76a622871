"""Probabilities for a data set of images (`ldcsf evaluate`, `ldcsf predict`), on one or many devices."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import LoadedCheckpoint
from ..options import PredictOptions
from .gather import GatheredOutputs
from .predictor import Predictor, prediction_trainer
from .runtimes import check_runtime_device, resolve_runtime, runtime_model


@dataclass
class Predictions:
    """Gathered outputs, one row per data set item in order; `is_global_zero` says who writes files."""

    probs: np.ndarray
    index: np.ndarray
    is_global_zero: bool
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def predict_dataset(loaded: LoadedCheckpoint, dataset: Dataset, options: PredictOptions) -> Predictions:
    """Run the checkpoint's model over `dataset` (items are dicts with a normalised "image" and "index").

    Every process ends with all items' outputs (gathered across processes), so each can go on alike.
    """
    check_runtime_device(options.runtime, options.accelerator)
    # The data set's transforms already normalised the images (mean/std apply to uint8 tiles only).
    runtime = resolve_runtime(options.runtime, loaded, options.accelerator, options.precision)
    predictor = Predictor.for_input(runtime_model(loaded, runtime), loaded.meta.input_spec)
    gathered = GatheredOutputs(len(loaded.meta.labels))
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers)
    trainer = prediction_trainer(**options.lightning_kwargs(), callbacks=[gathered], progress=options.progress,
                                 **options.trainer_kwargs)
    trainer.predict(predictor, dataloaders=loader, return_predictions=False)
    results = gathered.results
    if len(results["index"]) != len(dataset):
        raise RuntimeError(f"predicted {len(results['index'])} of {len(dataset)} images")
    extra = {k: v for k, v in results.items() if k not in ("probs", "index")}
    return Predictions(probs=results["probs"], index=results["index"], is_global_zero=trainer.is_global_zero, extra=extra)
