"""Probabilities for a data set through Lightning's `Trainer.predict` (one or many devices)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import LoadedCheckpoint
from ..options import PredictOptions


@dataclass
class Predictions:
    """Gathered outputs, one row per data set item in order; `is_global_zero` says who writes files."""

    probs: np.ndarray
    index: np.ndarray
    is_global_zero: bool
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def predict_dataset(loaded: LoadedCheckpoint, dataset: Dataset, options: PredictOptions) -> Predictions:
    """Run the checkpoint's model over `dataset` (items are dicts with "image" and "index")."""
    import lightning as L

    from ..inference.runtimes import check_runtime_device, runtime_model
    from ..training.module import MultiLabelModule

    meta = loaded.meta
    check_runtime_device(options.runtime, options.accelerator)
    module = MultiLabelModule(runtime_model(loaded, options.runtime), thresholds=meta.thresholds, mpp=meta.mpp,
                              mean=meta.mean, std=meta.std, interpolation=meta.interpolation,
                              stain_norm=meta.stain_norm)
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers)
    trainer = L.Trainer(
        **options.lightning_kwargs(), logger=False, enable_checkpointing=False,
        enable_progress_bar=options.progress, enable_model_summary=False, **options.trainer_kwargs,
    )
    # Outputs are gathered across processes inside the module; Lightning's per-process list is not needed.
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    results = module.predict_results
    if len(results["index"]) != len(dataset):
        raise RuntimeError(f"predicted {len(results['index'])} of {len(dataset)} images")
    extra = {k: v for k, v in results.items() if k not in ("probs", "index")}
    return Predictions(probs=results["probs"], index=results["index"], is_global_zero=trainer.is_global_zero, extra=extra)
