"""The LightningModule: a classifier from `ldcsf.models`, a masked loss, AdamW and a schedule.

Batches are dicts: "image" (N, 3, H, W), "index" (N,) the row of each image in its data set,
and "target" (N, L) with NaN = not annotated. Validation outputs are gathered from all processes
and de-duplicated by "index" (`ldcsf.inference.gather`), so metrics and thresholds are computed
on every image exactly once, also under DDP. Prediction is `ldcsf.inference.Predictor`'s job;
validation shares its forward (`model_outputs`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from timm.optim import create_optimizer_v2, param_groups_weight_decay

from ..checkpoint import CheckpointMeta
from ..data.manifest_checks import check_labels
from ..evaluation.metrics import mean_average_precision
from ..inference.gather import gather_by_index, per_image
from ..inference.predictor import model_outputs
from ..models import MultiLabelClassifier
from ..models.ensemble import ensemble_size
from ..models.input_spec import InputSpec
from ..options import TrainConfig
from .losses import build_loss
from .schedule import warmup_cosine_schedule

#: Key of the ldcsf model description inside a Lightning checkpoint (read by `load_checkpoint`).
META_KEY = "ldcsf"
#: Learning-rate factor of the pretrained backbone blocks that train with the heads (`train_backbone_blocks`).
TAIL_LR_SCALE = 0.1


class MultiLabelModule(L.LightningModule):
    """Trains and validates a `MultiLabelClassifier`.

    Args:
        model: a classifier built by `ldcsf.create_model` (its weights are saved as "model.*").
        loss: "bce" (masked binary cross-entropy) or "asl" (masked asymmetric loss).
        pos_weight: per-label weight of positive targets, or None.
        lr, weight_decay: AdamW settings (no decay on biases and norms).
        warmup_epochs: linear warm-up length in epochs (may be fractional), then cosine decay.
        thresholds: per-label decision thresholds stored in checkpoints (0.5 until tuned).
        input_spec: the model's input (µm/px, normalisation, resampling, stain reference), stored in
            checkpoints as it is; None: the model's own (`InputSpec.from_model`, at 0.5 µm/px).
        extra: plain-typed run summary stored in the checkpoint meta (e.g. the training config).
        area_weight: weight of the area head's loss (`ldcsf.training.area_loss`) when the model has one.

    All arguments but `model` are saved as hyper-parameters in plain Python types (the input spec
    as its checkpoint-meta entries), so that the checkpoint loads with `torch.load(weights_only=True)`.
    """

    def __init__(
        self,
        model: MultiLabelClassifier,
        loss: str = TrainConfig.loss,
        pos_weight: Sequence[float] | None = None,
        lr: float = TrainConfig.lr,
        weight_decay: float = TrainConfig.weight_decay,
        warmup_epochs: float = TrainConfig.warmup_epochs,
        thresholds: Sequence[float] | None = None,
        input_spec: InputSpec | None = None,
        extra: dict[str, Any] | None = None,
        area_weight: float = TrainConfig.area_weight,
    ):
        super().__init__()
        pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]
        #: what the checkpoint records about the input, unchanged from the run's spec
        self.input_spec = InputSpec.from_model(model) if input_spec is None else input_spec
        spec = self.input_spec.to_meta()
        self.save_hyperparameters(
            {"loss": loss, "pos_weight": pos_weight, "lr": float(lr), "weight_decay": float(weight_decay),
             "warmup_epochs": float(warmup_epochs), "mpp": spec["mpp"], "mean": spec["mean"], "std": spec["std"],
             "interpolation": spec["interpolation"], "stain_norm": spec["stain_norm"], "labels": list(model.labels),
             "extra": dict(extra or {}), "area_weight": float(area_weight)}
        )
        self.model = model
        self.loss_fn = build_loss(loss, None if pos_weight is None else torch.tensor(pos_weight))
        self.thresholds = [0.5] * model.num_labels if thresholds is None else [float(t) for t in thresholds]
        self._outputs: list[dict[str, torch.Tensor]] = []
        #: Gathered outputs of the last validation epoch (numpy, in data set order).
        self.val_results: dict[str, np.ndarray] = {}

    # -- steps ---------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def _logits_and_areas(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Presence logits and, with an area head, the area logit map; from images or cached backbone maps."""
        if "features" not in batch:  # images: the predictor's forward
            logits, areas = model_outputs(self.model, batch["image"])
            return logits.float(), areas
        # Frozen backbone: its maps were computed once (ldcsf.training.area_data).
        features = self.model.forward_neck(batch["features"])
        areas = self.model.area_logits(features) if self.model.has_area_head else None
        return self.model.forward_head(features).float(), areas

    def _loss(self, batch: dict[str, torch.Tensor], logits: torch.Tensor, areas: torch.Tensor | None,
              stage: str) -> torch.Tensor:
        loss = self.loss_fn(logits, batch["target"])
        n = len(batch["target"])
        if areas is not None and self.hparams.area_weight > 0:
            from .area_loss import area_loss

            part = area_loss(areas, batch.get("area"), batch["target"])
            self.log(f"{stage}/area_loss", part, on_epoch=True, sync_dist=stage == "val", batch_size=n)
            loss = loss + self.hparams.area_weight * part
        return loss

    def training_step(self, batch: dict[str, torch.Tensor] | list[dict[str, torch.Tensor]],
                      batch_idx: int) -> torch.Tensor:
        members = ensemble_size(self.model)
        if isinstance(batch, list) or ("features" in batch and members > 1):
            # Each head is fitted on its own outputs, not through the mean: K independent heads
            # (they share no weights, so each one's gradient is that of its own loss). With one
            # loader per head (CachedFeatureDataModule's member_orders) each has its own batch.
            parts = batch if isinstance(batch, list) else [batch] * members
            if len(parts) != members:
                raise ValueError(f"{len(parts)} batches for {members} ensemble members")
            loss = torch.stack([self._member_loss(k, part) for k, part in enumerate(parts)]).mean()
            n = len(parts[0]["target"])
        else:
            loss = self._loss(batch, *self._logits_and_areas(batch), stage="train")
            n = len(batch["target"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def _member_loss(self, index: int, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Ensemble member `index`'s loss on a batch of cached backbone maps (its own view's)."""
        member = self.model.members[index]
        neck = member.forward_neck(self.model.member_maps(index, batch["features"]))
        areas = member.area_logits(neck) if member.has_area_head else None
        return self._loss(batch, member.forward_head(neck).float(), areas, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, areas = self._logits_and_areas(batch)
        loss = self._loss(batch, logits, areas, stage="val")
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(batch["target"]))
        self._keep(batch, logits)

    def _keep(self, batch: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
        # Everything per image but the pixels travels along: "index", "target".
        kept = {k: v for k, v in batch.items() if k not in ("image", "features", "area")}
        self._outputs.append(per_image(kept | {"probs": torch.sigmoid(logits)}))

    # -- epoch ends: gather every process's outputs ----------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def on_validation_epoch_end(self) -> None:
        self.val_results = gather_by_index(self._outputs, self.model.num_labels, self.device)
        self._outputs = []
        score = mean_average_precision(self.val_results["probs"], self.val_results["target"])
        # Every process computed the same value from the same gathered outputs.
        self.log("val/mAP", score if math.isfinite(score) else 0.0, prog_bar=True, sync_dist=True)

    # -- optimiser -------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = create_optimizer_v2(optimizer_groups(self.model, self.hparams.lr, self.hparams.weight_decay), "adamw",
                                        lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        # estimated_stepping_batches has set up the train loader, so its length is known here.
        batches = self.trainer.num_training_batches
        steps_per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches) if math.isfinite(batches) else total_steps
        warmup_steps = round(self.hparams.warmup_epochs * steps_per_epoch)
        scheduler = warmup_cosine_schedule(optimizer, warmup_steps, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoint meta -----------------------------------------------------------------------
    def checkpoint_meta(self) -> CheckpointMeta:
        """How to use these weights: labels, thresholds, input size, mpp, normalisation, run summary."""
        return CheckpointMeta.for_model(self.model, thresholds=self.thresholds, extra=self.hparams.extra,
                                        input_spec=self.input_spec)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[META_KEY] = self.checkpoint_meta().to_dict()
        if isinstance(checkpoint.get("state_dict"), dict):  # the digest `load_checkpoint` verifies
            from ..checkpoint import WEIGHTS_DIGEST_KEY
            from ..checkpoint_safety import weights_digest

            model = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
            checkpoint[WEIGHTS_DIGEST_KEY] = weights_digest(model)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(META_KEY)
        if meta:
            check_labels(meta["labels"], self.model.labels, where="checkpoint")
            self.thresholds = [float(t) for t in meta["thresholds"]]


def optimizer_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict] | nn.Module:
    """timm's weight-decay groups, with pretrained backbone blocks that train (`backbone_tail`) at
    `TAIL_LR_SCALE` of the learning rate: a pretrained block moved at the heads' rate forgets what
    ImageNet taught it. Models without such blocks get the model itself (timm groups it the same way)."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups_weight_decay(model, weight_decay)
    if not any("backbone_tail." in names[id(p)] for g in groups for p in g["params"]):
        return model
    split = []
    for group in groups:
        for tail in (False, True):
            params = [p for p in group["params"] if ("backbone_tail." in names[id(p)]) == tail]
            if params:
                split.append({**group, "params": params, "lr": lr * TAIL_LR_SCALE if tail else lr})
    return split

