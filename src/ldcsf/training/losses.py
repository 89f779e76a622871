"""Multi-label losses that ignore labels a source does not annotate.

Targets are float tensors (N, L) with 1 = present, 0 = absent and NaN = not annotated. An
unannotated entry must not count as "absent": every loss here masks it out, so it contributes
neither loss nor gradient, and averages over the annotated entries only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("bce", "asl")


def known_mask(targets: torch.Tensor) -> torch.Tensor:
    """True where a target is annotated (not NaN)."""
    return ~torch.isnan(targets)


def _masked_mean(per_entry: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # torch.where (not multiplication) so that a non-finite value on a masked entry cannot leak
    # into the sum; clamp keeps a batch without any annotation at a loss of exactly 0.
    total = torch.where(mask, per_entry, torch.zeros_like(per_entry)).sum()
    return total / mask.sum().clamp(min=1)


def masked_bce_with_logits(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy on logits, averaged over annotated entries only."""
    mask = known_mask(targets)
    per_entry = F.binary_cross_entropy_with_logits(
        logits, torch.where(mask, targets, torch.zeros_like(targets)), pos_weight=pos_weight, reduction="none"
    )
    return _masked_mean(per_entry, mask)


class MaskedBCEWithLogitsLoss(nn.Module):
    """`masked_bce_with_logits` as a module; `pos_weight` (L,) up-weights positives per label."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return masked_bce_with_logits(logits.float(), targets.float(), self.pos_weight)


class MaskedAsymmetricLoss(nn.Module):
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021), masked.

    Easy negatives are down-weighted by focusing (`gamma_neg`) and by shifting their probability
    down by `clip` (probability margin), which suits data where most labels are absent from
    most images. Written here rather than taken from timm because timm's
    `AsymmetricLossMultiLabel` sums over all entries and cannot skip unannotated ones.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 pos_weight: torch.Tensor | None = None, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = logits.float(), targets.float()
        mask = known_mask(targets)
        y = torch.where(mask, targets, torch.zeros_like(targets))
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p  # probability shifting
        loss_pos = y * torch.log(p.clamp(min=self.eps)) * (1 - p).pow(self.gamma_pos)
        if self.pos_weight is not None:
            loss_pos = loss_pos * self.pos_weight
        loss_neg = (1 - y) * torch.log((1 - p_neg).clamp(min=self.eps)) * p_neg.pow(self.gamma_neg)
        return _masked_mean(-(loss_pos + loss_neg), mask)


def build_loss(name: str, pos_weight: torch.Tensor | None = None) -> nn.Module:
    """The loss called `name` ("bce" or "asl")."""
    if name == "bce":
        return MaskedBCEWithLogitsLoss(pos_weight)
    if name == "asl":
        return MaskedAsymmetricLoss(pos_weight=pos_weight)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def positive_weights(targets: torch.Tensor, max_weight: float = 10.0) -> torch.Tensor:
    """Per-label weight negatives/positives over annotated entries, clipped to [1/max, max].

    A label without positives (or negatives) gets the clip bound rather than infinity (or 0).
    """
    targets = torch.as_tensor(targets, dtype=torch.float32)
    mask = known_mask(targets)
    positives = ((targets == 1) & mask).sum(0).float()
    negatives = ((targets == 0) & mask).sum(0).float()
    ratio = negatives / positives.clamp(min=1e-12)
    return ratio.clamp(min=1.0 / max_weight, max=max_weight)
