"""Several heads on one backbone, in one model: `create_model("ldcsf", ensemble=3, ...)`.

With a frozen backbone only what follows it differs between training runs, so an ensemble need
not repeat the backbone: `HeadEnsemble` runs it once and hands its map to K members, each a full
classifier of the same variant without its own backbone (neck, head and area head).

Its outputs are the members' mean, so every consumer of a classifier (prediction, evaluation,
slides, export) uses it unchanged; `forward_members` gives each member's outputs beside it. The
mean is taken over logits, not probabilities: the heads are linear, so the mean of the members'
per-position logits still pools to the mean of their pooled logits (the identity the sub-tile
maps rely on, `MultiLabelClassifier.spatial_logits`), and it stays finite where a member is sure.

Members may look at different stain views of the same tile (`views`): "plain" is the tile as it
comes, "macenko" its Macenko-normalised copy, made inside the model (`macenko.MacenkoView`, plain
tensor operations, so the model still exports to ONNX). The backbone then runs once per view and
its maps are stacked along the channels, each member reading its own view's channels: heads on
plain and on normalised maps disagree where the stain misleads one of them, and their mean held
better on sources never trained on than either view alone (docs/results.md, "Heads on two stain
views").
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import feature_map
from .base import MultiLabelClassifier

#: The stain views a member may read: the tile as it comes, and its Macenko-normalised copy.
STAIN_VIEWS = ("plain", "macenko")


class HeadEnsemble(MultiLabelClassifier):
    """K members of one variant sharing the first member's backbone.

    Args:
        members: classifiers of one variant (same labels, input size and backbone); the first
            one's backbone is kept and every member's own backbone dropped.
        seeds: the seed each member was initialised with (recorded, not used).
        views: the stain view each member reads (`STAIN_VIEWS`); all "plain" when None.
        mean, std: the input's normalisation, which the Macenko view undoes and redoes (needed
            when a member reads "macenko").
    """

    def __init__(self, members: Sequence[MultiLabelClassifier], seeds: Sequence[int] | None = None,
                 views: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        views = ["plain"] * len(members) if views is None else [str(v) for v in views]
        if len(views) != len(members) or not set(views) <= set(STAIN_VIEWS):
            raise ValueError(f"ensemble views must name one of {', '.join(STAIN_VIEWS)} per member "
                             f"({len(members)}), got {views}")
        first = members[0]
        super().__init__(first.labels, first.img_size, first.num_features)
        self.head = None  # each member has its own; the ensemble's would be unused weights
        self.fixed_input_size = first.fixed_input_size
        self.backbone = first.backbone_module()
        for member in members:
            del member.backbone  # only the ensemble holds a backbone (saved once)
        self.members = nn.ModuleList(members)
        self.seeds = None if seeds is None else [int(s) for s in seeds]
        self.views = views
        #: The views the backbone runs on, in the order their maps are stacked.
        self.view_order = [v for v in STAIN_VIEWS if v in views]
        self.macenko = None
        if "macenko" in views:
            if mean is None or std is None:
                raise ValueError("a member on the macenko view needs the input's mean and std")
            from .macenko import MacenkoView

            self.macenko = MacenkoView(mean, std)

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
        """The backbone's map, or with several views each view's map stacked along the channels
        (in `view_order`; one backbone pass over all views)."""
        self.check_input(x)
        if self.view_order == ["plain"]:
            return feature_map(self.backbone, self.backbone.forward_features(x))
        inputs = torch.cat([x if view == "plain" else self.macenko(x) for view in self.view_order])
        maps = feature_map(self.backbone, self.backbone.forward_features(inputs))
        return torch.cat(maps.chunk(len(self.view_order)), dim=1)

    def member_maps(self, index: int, features: torch.Tensor) -> torch.Tensor:
        """Member `index`'s part of a (stacked) backbone map: its own view's channels."""
        if len(self.view_order) == 1:
            return features
        return features.chunk(len(self.view_order), dim=1)[self.view_order.index(self.views[index])]

    def _members_on(self, features: torch.Tensor):
        """(member, its neck on its view's map) for every member."""
        return [(m, m.forward_neck(self.member_maps(i, features))) for i, m in enumerate(self.members)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_backbone(x)

    def member_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each member's (pooled logits (K, N, L), area logit maps (K, N, L, h, w) or None) on a backbone map."""
        logits, areas = [], []
        for member, neck in self._members_on(features):
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
        return torch.stack([m.forward_head(neck) for m, neck in self._members_on(x)]).mean(0)

    def spatial_logits(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.spatial_logits(neck) for m, neck in self._members_on(features)]).mean(0)

    def area_logits(self, features: torch.Tensor) -> torch.Tensor:
        if not self.has_area_head:
            raise ValueError("this model has no area head (build it with area_head=True)")
        return torch.stack([m.area_logits(neck) for m, neck in self._members_on(features)]).mean(0)

    def forward_with_areas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, areas = self.forward_members(x)
        return logits.mean(0), None if areas is None else areas.mean(0)


def ensemble_size(model: nn.Module) -> int:
    """How many members a model's outputs average (1 for a plain classifier or an exported runtime)."""
    return int(getattr(model, "ensemble_size", 1))
