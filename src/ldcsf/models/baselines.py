"""Baselines in the same harness: a timm backbone, global average pooling, the same linear head."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .backbones import check_gives_feature_map, create_backbone, feature_map, input_size_of
from .base import MultiLabelClassifier


class TimmClassifier(MultiLabelClassifier):
    """Any timm backbone (plain Swin, ResNet-18/50, ...) with the shared multi-label head."""

    def __init__(
        self,
        labels: Sequence[str],
        backbone: str,
        img_size: int | tuple[int, int] | None = None,
        backbone_kwargs: dict | None = None,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        kwargs = dict(backbone_kwargs or {})
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        net = create_backbone(
            backbone, img_size=img_size, pretrained=pretrained, pretrained_file=pretrained_file, **kwargs
        )
        img_size = (input_size_of(net),) * 2 if img_size is None else tuple(img_size)
        check_gives_feature_map(backbone, net, img_size)
        super().__init__(labels, img_size, net.num_features, drop_rate)
        self.fixed_input_size = net.pretrained_cfg.get("fixed_input_size", True)
        self.backbone = net

    def backbone_module(self) -> nn.Module:
        return self.backbone

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return feature_map(self.backbone, self.backbone.forward_features(x))
