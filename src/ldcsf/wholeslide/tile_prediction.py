"""Batched tile prediction of a slide, written to disk batch by batch so it can resume.

Every finished batch goes to the slide's `PredictionStore` (one small file per batch); a rerun
predicts only the tiles no part file holds yet. Nothing is kept in memory per slide beyond one
batch, so memory stays flat however large the slide.

One process on one device in full precision (a laptop, a workstation, one GPU) runs the
`BatchPredictor` in a plain loop here. Anything more (several devices or nodes, mixed precision,
Lightning callbacks) goes through Lightning's `Trainer.predict` (`distributed_prediction`): its
import and start-up cost about 1 s, most of a small slide's prediction time on a CPU, and buy
nothing for one process.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from ..inference.batch_predictor import BatchPredictor
from ..options import lightning_precision
from ..utils.prefetch import Prefetched
from ..utils.workers import leave_stop_signals_to_parent
from .prediction_store import PredictionStore  # noqa: F401 - where callers have imported it from


def __getattr__(name: str):
    # The predictor's former name here, and the Lightning pieces that moved to distributed_prediction.
    if name == "TilePredictor":
        from ..inference.predictor import Predictor

        return Predictor
    if name in ("PartWriter", "RemainingTiles", "make_trainer"):
        from . import distributed_prediction

        return getattr(distributed_prediction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def in_process_device(accelerator: str = "auto", devices: Any = "auto", strategy: str = "auto", num_nodes: int = 1,
                      precision: str | None = None, callbacks: Sequence = ()) -> torch.device | None:
    """The one device a plain loop predicts on, or None when the run needs Lightning.

    Lightning is needed for more than one process (several devices or nodes, a named strategy),
    for mixed or half precision, and for callbacks (they are Lightning callbacks). `devices="auto"`
    is one device on a CPU and on a machine with one GPU, as Lightning counts it.
    """
    if callbacks or strategy not in ("auto", None) or int(num_nodes) != 1:
        return None
    if lightning_precision(precision) not in (None, "32-true", "32", 32):
        return None
    accelerator = str(accelerator).lower()
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}.get(accelerator)
    if kind is None:
        return None
    text = str(devices).strip()
    if kind == "cuda":
        one = text in ("1", "[0]") or (text == "auto" and torch.cuda.device_count() == 1)
    else:
        one = text in ("1", "auto")  # Lightning reads a CPU count as that many processes
    if not one:
        return None
    return torch.device("cuda", 0) if kind == "cuda" else torch.device(kind)


def predict_in_process(predictor: BatchPredictor, store: PredictionStore, make_dataset, device: torch.device,
                       batch_size: int, num_workers: int, progress: bool = True) -> None:
    """Every tile not yet in `store`, batch by batch through `predictor` on `device`, each batch saved."""
    from ..utils.progress import tqdm
    from ..utils.signals import raise_pending_stop, stops_at_batch_ends

    store.prepare()
    dataset = make_dataset(store.done_indices())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda",
                        worker_init_fn=leave_stop_signals_to_parent if num_workers else None)
    predictor = predictor.to(device).eval()
    predictor.prepare_for(device)
    # Without worker processes, the next batch is read on a thread while the model runs this one.
    batches = Prefetched(loader) if num_workers == 0 else nullcontext(loader)
    try:
        with batches as loaded, stops_at_batch_ends(), torch.inference_mode(), \
                tqdm(total=len(dataset), desc="Predicting", unit="tile", disable=not progress) as bar:
            for images, index in loaded:
                out = predictor.predict_images(predictor.model_input(images.to(device, non_blocking=True)))
                optional = {key: None if out.get(key) is None else out[key].cpu().numpy()
                            for key in ("areas", "member_probs", "member_areas")}
                store.write_batch(index.numpy(), out["probs"].cpu().numpy(), rank=0, **optional)
                bar.update(len(index))
                raise_pending_stop()  # a stop signal that came during the batch: the batch is saved
    finally:
        dataset.close()


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
) -> bool:
    """Predict every tile not yet in `store`; True on the process that holds the results.

    `make_dataset(done_indices)` builds the TileDataset of the tiles still to predict; `mean` and
    `std` normalise its [0, 1] RGB for the model (the checkpoint's); `members`: store an ensemble's
    per-member outputs too. `trainer_kwargs` are Lightning's (accelerator, devices, strategy,
    num_nodes, precision, callbacks, progress): one process on one device in full precision runs
    in a plain loop (`in_process_device`), anything else under `Trainer.predict`, where only global
    rank 0 returns True.
    """
    device = in_process_device(**{k: v for k, v in trainer_kwargs.items()
                                  if k in ("accelerator", "devices", "strategy", "num_nodes", "precision", "callbacks")})
    if device is not None:
        predictor = BatchPredictor(model, mean, std, tta=tta, members=members)
        predict_in_process(predictor, store, make_dataset, device, batch_size, num_workers,
                           progress=trainer_kwargs.get("progress", True))
        return True
    from .distributed_prediction import predict_tiles_with_trainer

    return predict_tiles_with_trainer(model, store, make_dataset, batch_size, num_workers, mean, std, tta, members,
                                      **trainer_kwargs)
