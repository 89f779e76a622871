"""Training: masked multi-label losses, the LightningModule and DataModule, and `train`."""

from .losses import MaskedAsymmetricLoss, MaskedBCEWithLogitsLoss, build_loss, masked_bce_with_logits, positive_weights
from .train import TrainConfig, TrainResult, effective_mpp, train

__all__ = [
    "MaskedAsymmetricLoss",
    "MaskedBCEWithLogitsLoss",
    "TrainConfig",
    "TrainResult",
    "build_loss",
    "effective_mpp",
    "masked_bce_with_logits",
    "positive_weights",
    "train",
]
