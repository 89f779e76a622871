"""Per-image outputs from every process, each image once, in data set order.

Under DDP each process sees a share of the data set, and Lightning's distributed sampler repeats
a few items so every process gets the same number. Outputs carry each item's "index"; gathering
them from all processes and keeping the first row of every index gives each image exactly once,
so metrics and thresholds are computed on the whole set, the same on every process.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.utilities.distributed import gather_all_tensors


def gather_by_index(outputs: list[dict[str, torch.Tensor]], num_labels: int, device: torch.device) -> dict[str, np.ndarray]:
    """Concatenate batch outputs, gather them from all processes, sort by "index", drop repeats."""
    keys = list(outputs[0]) if outputs else ["probs", "index"]
    local = {
        k: torch.cat([o[k] for o in outputs]) if outputs
        else torch.empty((0,) if k == "index" else (0, num_labels), device=device)
        for k in keys
    }
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # torchmetrics' gather pads and trims, so processes may hold different counts.
        local = {k: torch.cat(gather_all_tensors(v.contiguous())) for k, v in local.items()}
    index = local["index"].cpu().numpy()
    _, first = np.unique(index, return_index=True)  # sorted by index, duplicates dropped
    return {k: v.cpu().numpy()[first] for k, v in local.items()}


def per_image(output: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a step's output worth gathering; bools as uint8 (gloo cannot gather bools)."""
    return {k: (v.to(torch.uint8) if v.dtype == torch.bool else v).detach()
            for k, v in output.items() if isinstance(v, torch.Tensor)}


class GatheredOutputs(L.Callback):
    """Keeps every predicted batch, and at the epoch's end the outputs of all processes (`results`)."""

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels
        self._outputs: list[dict[str, torch.Tensor]] = []
        #: {"index", "probs", ...}: numpy arrays, one row per data set item in order.
        self.results: dict[str, np.ndarray] = {}

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._outputs.append(per_image(outputs))

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.results = gather_by_index(self._outputs, self.num_labels, pl_module.device)
        self._outputs = []
