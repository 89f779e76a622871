"""The loss of the area head: per-cell fractions where a mask exists, presence elsewhere.

- Tiles with a pixel mask: binary cross-entropy of each cell's sigmoid against the cell's
  class fraction (a soft target), for the labels the mask annotates.
- Tiles with presence labels only: the most confident cell is scored against the presence
  label (multiple-instance learning). A label marked absent has no area anywhere in the tile;
  a label marked present has it in at least one cell. Without this, labels no mask annotates
  (necrosis, lymphocytes) would never teach the area head anything.
Unannotated entries (NaN) contribute nothing, as in `ldcsf.training.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def area_loss(area_logits: torch.Tensor, area_targets: torch.Tensor | None, presence: torch.Tensor,
              mil_weight: float = 1.0) -> torch.Tensor:
    """Mean BCE over mask-supervised cells plus `mil_weight` x BCE of the max cell vs presence.

    Args:
        area_logits: (N, L, h, w) output of the area head.
        area_targets: (N, L, h, w) cell fractions in [0, 1], NaN where no mask annotates the label
            (whole tiles without a mask are all NaN); None when no tile of the batch has one.
        presence: (N, L) presence targets, NaN = not annotated.
    """
    area_logits = area_logits.float()
    total = area_logits.new_zeros(())
    if area_targets is not None:
        known = ~torch.isnan(area_targets)
        if known.any():
            bce = F.binary_cross_entropy_with_logits(area_logits, torch.nan_to_num(area_targets), reduction="none")
            total = total + torch.where(known, bce, torch.zeros_like(bce)).sum() / known.sum()
        # A (tile, label) with a mask target is not also scored by the presence proxy.
        has_mask = known.flatten(2).any(-1)
    else:
        has_mask = torch.zeros_like(presence, dtype=torch.bool)
    if mil_weight > 0:
        use = ~torch.isnan(presence) & ~has_mask
        if use.any():
            strongest = area_logits.flatten(2).amax(-1)
            bce = F.binary_cross_entropy_with_logits(strongest, torch.nan_to_num(presence), reduction="none")
            total = total + mil_weight * torch.where(use, bce, torch.zeros_like(bce)).sum() / use.sum()
    return total
