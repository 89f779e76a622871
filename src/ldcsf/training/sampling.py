"""A sampler that evens out label frequencies: each epoch draws rare-label images more often."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


def balanced_sample_weights(targets) -> torch.Tensor:
    """Per-image sampling weight: 1 / count of its rarest positive label.

    Images with no positive label form one more group ("none of the labels") with its own count,
    so background tiles are drawn as often as one label's positives, not drowned or dominant.
    Unannotated (NaN) entries are not positives.
    """
    targets = np.asarray(targets, dtype=np.float32)
    positive = np.nan_to_num(targets, nan=0.0) == 1
    counts = positive.sum(axis=0).astype(np.float64)
    none_count = max(1, int((~positive.any(axis=1)).sum()))
    per_label = np.where(positive, 1.0 / np.maximum(counts, 1.0)[None, :], 0.0)
    weights = np.where(positive.any(axis=1), per_label.max(axis=1), 1.0 / none_count)
    return torch.as_tensor(weights, dtype=torch.double)


def balanced_sampler(targets, seed: int = 0) -> WeightedRandomSampler:
    """Draw len(targets) images per epoch with replacement, weighted by `balanced_sample_weights`.

    Under DDP, Lightning wraps this sampler so that each process draws its own share.
    """
    weights = balanced_sample_weights(targets)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)
