"""Several heads on one backbone, in one model: `create_model("ldcsf", ensemble=3, ...)`.

With a frozen backbone only what follows it differs between training runs, so an ensemble need
not repeat the backbone: `HeadEnsemble` runs it once and hands its map to K members, each a full
classifier of the same variant without its own backbone (neck, head and area head).

Its outputs are the members' mean, so every consumer of a classifier (prediction, evaluation,
slides, export) uses it unchanged; `forward_members` gives each member's outputs beside it. The
mean is taken over logits, not probabilities: the heads are linear, so the mean of the members'
per-position logits still pools to the mean of their pooled logits (the identity the sub-tile
maps rely on, `MultiLabelClassifier.spatial_logits`), and it stays finite where a member is sure.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import feature_map
from .base import MultiLabelClassifier


class HeadEnsemble(MultiLabelClassifier):
    """K members of one variant sharing the first member's backbone.

    Args:
        members: classifiers of one variant (same labels, input size and backbone); the first
            one's backbone is kept and every member's own backbone dropped.
        seeds: the seed each member was initialised with (recorded, not used).
    """

    def __init__(self, members: Sequence[MultiLabelClassifier], seeds: Sequence[int] | None = None):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        first = members[0]
        super().__init__(first.labels, first.img_size, first.num_features)
        self.head = None  # each member has its own; the ensemble's would be unused weights
        self.fixed_input_size = first.fixed_input_size
        self.backbone = first.backbone_module()
        for member in members:
            del member.backbone  # only the ensemble holds a backbone (saved once)
        self.members = nn.ModuleList(members)
        self.seeds = None if seeds is None else [int(s) for s in seeds]

    @property
    def ensemble_size(self) -> int:
        return len(self.members)

    @property
    def has_area_head(self) -> bool:
        return self.members[0].has_area_head

    def backbone_module(self) -> nn.Module:
        return self.backbone

    # -- the shared map: "features" of an ensemble are its backbone's, each member adds its neck --
    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return feature_map(self.backbone, self.backbone.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_backbone(x)

    def member_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's (pooled logits (K, N, L), area logit maps (K, N, L, h, w) or None) on a backbone map."""
        logits, areas = [], []
        for member in self.members:
            neck = member.forward_neck(features)
            logits.append(member.forward_head(neck))
            if member.has_area_head:
                areas.append(member.area_logits(neck))
        return torch.stack(logits), torch.stack(areas) if areas else None

    def forward_members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's outputs on a batch of images: one backbone pass, K heads."""
        return self.member_outputs(self.forward_backbone(x))

    # -- the mean: what every consumer of a classifier sees ----------------------------------------
    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            raise ValueError("an ensemble has no single pre-logit vector (each member pools its own neck)")
        return torch.stack([m.forward_head(m.forward_neck(x)) for m in self.members]).mean(0)

    def spatial_logits(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.spatial_logits(m.forward_neck(features)) for m in self.members]).mean(0)

    def area_logits(self, features: torch.Tensor) -> torch.Tensor:
        if not self.has_area_head:
            raise ValueError("this model has no area head (build it with area_head=True)")
        return torch.stack([m.area_logits(m.forward_neck(features)) for m in self.members]).mean(0)

    def forward_with_areas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, areas = self.forward_members(x)
        return logits.mean(0), None if areas is None else areas.mean(0)


def ensemble_size(model: nn.Module) -> int:
    """How many members a model's outputs average (1 for a plain classifier or an exported runtime)."""
    return int(getattr(model, "ensemble_size", 1))
