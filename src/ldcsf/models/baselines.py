"""Baselines in the same harness: a timm backbone, global average pooling, the same linear head."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .backbones import backbone_output_is_nhwc, create_backbone
from .base import MultiLabelClassifier


class TimmClassifier(MultiLabelClassifier):
    """Any timm backbone (plain Swin, ResNet-18/50, ...) with the shared multi-label head."""

    def __init__(
        self,
        labels: Sequence[str],
        backbone: str,
        img_size: int | tuple[int, int] = 224,
        backbone_kwargs: dict | None = None,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        kwargs = dict(backbone_kwargs or {})
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        is_transformer = "swin" in backbone or "vit" in backbone
        net = create_backbone(
            backbone,
            img_size=img_size if is_transformer else None,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            **kwargs,
        )
        super().__init__(labels, img_size, net.num_features, drop_rate)
        self.fixed_input_size = is_transformer
        self.backbone = net
        self.backbone_nhwc = backbone_output_is_nhwc(net)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.backbone.forward_features(x)
        return x.permute(0, 3, 1, 2) if self.backbone_nhwc else x
