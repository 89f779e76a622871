"""The arithmetic of prediction: a classifier and its input normalisation in, probabilities (and area maps) out.

`BatchPredictor` is a plain `nn.Module`, so one process on one device runs it in a loop without
Lightning (`ldcsf.wholeslide.tile_prediction`), and `predictor.Predictor` is the same class as a
LightningModule for `Trainer.predict` (several devices or nodes, mixed precision). Importing this
file loads torch only.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..models.input_spec import InputSpec


def model_outputs(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(presence logits, area logit map or None) of one pass: a classifier or an exported runtime.

    Training's validation uses the same forward, so scores seen while training are the ones
    prediction gives.
    """
    if getattr(model, "has_area_head", False):
        return model.forward_with_areas(images)
    return model(images), None


def ensemble_size(model: nn.Module) -> int:
    """How many members a model's outputs average (1 for a plain classifier or an exported runtime)."""
    return int(getattr(model, "ensemble_size", 1))


# Each mirrored map is flipped back before averaging, so cells stay where they are.
_UNFLIP = [lambda m: m, lambda m: m.flip(-1), lambda m: m.flip(-2)]


class BatchPredictor(nn.Module):
    """Images in, sigmoid probabilities out, one batch at a time.

    Batches are either `(images, index)` tuples of uint8 (N, H, W, 3) tiles, as `TileDataset`
    makes them, which are turned into the model's normalised float input here, in one operation
    per batch on the model's device; or dicts {"image", "index", ...} of float (N, 3, H, W) images
    already normalised by their transforms (`ldcsf.data.transforms.eval_transforms`). A dict's
    other per-image tensors ("target", "ok") travel along into the output.

    Each step returns {"index", "probs"} and, for a model with an area head, "areas": the sigmoid
    sub-tile area maps (N, labels, h, w).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channels_last: bool | None = None,
        tta: bool = False,
        members: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        #: also return each ensemble member's outputs ("member_probs", "member_areas"), for a model that has members
        self.members = members and ensemble_size(model) > 1
        #: flip test-time augmentation: average the probabilities of the tile and its two mirror images
        self.tta = tta
        # Normalisation of 0-255 values: (x / 255 - mean) / std = (x - 255 mean) / (255 std).
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255, persistent=False)
        #: None = decide on the device: channels_last speeds up convolutions on GPUs only.
        self.channels_last = channels_last

    @classmethod
    def for_input(cls, model: nn.Module, input_spec: InputSpec, **kwargs: Any):
        """The predictor of `model` that normalises uint8 tiles as `input_spec` says."""
        return cls(model, input_spec.mean, input_spec.std, **kwargs)

    def prepare_for(self, device: torch.device) -> None:
        """Settle the memory layout for the device the model runs on (once, before the first batch)."""
        if self.channels_last is None:
            self.channels_last = device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), channels-last in memory when wanted."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        # A permuted NHWC batch already is channels-last NCHW: on GPUs the float copy keeps it.
        images = images.permute(0, 3, 1, 2).to(dtype=torch.float32, memory_format=layout)
        images = images.sub_(self.pixel_mean).div_(self.pixel_std)
        return self._as_weights(images)

    def _as_weights(self, images: torch.Tensor) -> torch.Tensor:
        # Under a "-true" precision the weights are bf16/fp16: the input must match them.
        weight = next(self.model.parameters(), None)
        return images if weight is None or not weight.is_floating_point() else images.to(weight.dtype)

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input of a batch: uint8 tiles are normalised, float images taken as they are."""
        if images.dtype == torch.uint8:
            return self.normalise(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._as_weights(images)

    def predict_images(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"probs"} and, with an area head, {"areas"} of a batch of model input.

        With `members`: also {"member_probs"} (N, K, L) and {"member_areas"} (N, K, L, h, w), from
        the same pass (the model's outputs are the mean of its members' logits).
        """
        views = [images, images.flip(-1), images.flip(-2)] if self.tta else [images]
        if self.members:
            return self._with_members(views)
        outputs = [model_outputs(self.model, view) for view in views]
        probs = torch.stack([torch.sigmoid(logits.float()) for logits, _ in outputs]).mean(0)
        if outputs[0][1] is None:
            return {"probs": probs}
        areas = torch.stack([undo(torch.sigmoid(a.float())) for undo, (_, a) in zip(_UNFLIP, outputs)]).mean(0)
        return {"probs": probs, "areas": areas}

    def _with_members(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = [self.model.forward_members(view) for view in views]  # (K, N, L) logits, (K, N, L, h, w) areas
        out = {"probs": torch.stack([torch.sigmoid(m.float().mean(0)) for m, _ in outputs]).mean(0),
               "member_probs": torch.stack([torch.sigmoid(m.float()) for m, _ in outputs]).mean(0).transpose(0, 1)}
        if outputs[0][1] is not None:
            out["areas"] = torch.stack([undo(torch.sigmoid(a.float().mean(0))) for undo, (_, a) in zip(_UNFLIP, outputs)]).mean(0)
            members = torch.stack([undo(torch.sigmoid(a.float())) for undo, (_, a) in zip(_UNFLIP, outputs)]).mean(0)
            out["member_areas"] = members.transpose(0, 1)
        return out

    def predict_step(self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        if isinstance(batch, dict):
            images, index = batch["image"], batch["index"]
            extra = {k: v for k, v in batch.items() if k not in ("image", "index") and isinstance(v, torch.Tensor)}
        else:
            (images, index), extra = batch, {}
        return {"index": index, **extra, **self.predict_images(self.model_input(images))}
