"""LDCSF: local depth convolution-based Swin framework for multi-label histopathology.

After Pan et al. 2023, "LDCSF: Local depth convolution-based Swim framework for classifying
multi-label histopathology images". The data path, in order:

    image ─► Swin transformer ─► LDC ─► FR ─► ResNet blocks ─► pool ─► linear ─► sigmoid
             (shifted windows)   (depthwise   (channel   (bottlenecks)
                                  convs)      gates)

The paper's backbone is Swin; LDC, FR and the ResNet blocks work on any 2-D feature map, so any
timm backbone can stand in for it (`create_model("ldcsf", backbone="tf_efficientnet_lite0")`).

Every choice the paper leaves open is written down in docs/model.md. The file reads bottom-up,
as timm's model files do: the two small modules, the ResNet stage, then the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from timm.layers import SEModule
from timm.models.resnet import Bottleneck
from torch import nn

from .backbones import check_gives_feature_map, create_backbone, feature_map, input_size_of, split_last_blocks
from .base import MultiLabelClassifier
from .stain_channels import StainChannels


class LocalDepthConv(nn.Module):
    """LDC: depthwise (per-channel) convolutions over the 2-D map rebuilt from Swin tokens.

    Window attention mixes tokens only inside (shifted) windows; a stack of depthwise convs
    adds the local neighbourhood across window borders at little cost. The stack is residual
    and its last BatchNorm starts at zero, so a fresh LDC is the identity and does not disturb
    a pretrained Swin at the start of fine-tuning.
    """

    def __init__(self, channels: int, depth: int = 2, kernel_size: int = 3, act_layer: type[nn.Module] = nn.GELU):
        super().__init__()
        if depth < 1:
            raise ValueError(f"ldc_depth must be at least 1, got {depth}")
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False),
                nn.BatchNorm2d(channels),
            ]
            if i < depth - 1:
                layers.append(act_layer())
        nn.init.zeros_(layers[-1].weight)
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


class FeatureReconstruction(SEModule):
    """FR: one learned weight per channel, multiplied with the feature map it came from.

    The weights come from the map itself (global average pool → 1x1 conv → ReLU → 1x1 conv →
    sigmoid), i.e. a squeeze-and-excitation gate; timm's `SEModule` is that gate.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__(channels, rd_ratio=1.0 / reduction, rd_divisor=1)


def resnet_stage(in_channels: int, planes: int, blocks: int) -> nn.Sequential:
    """Bottleneck residual blocks (timm's) at stride 1: the map keeps its resolution."""
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [Bottleneck(in_channels, planes, downsample=downsample)]
    layers += [Bottleneck(out_channels, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class LDCSF(MultiLabelClassifier):
    """The LDCSF multi-label classifier.

    Args:
        labels: label names (one sigmoid output each).
        backbone: timm name of the backbone (Swin-T by default; any timm model with a 2-D map).
        img_size: input size in pixels (square if an int); default: the backbone's pretrained size.
        backbone_kwargs: architecture overrides passed to timm (embed_dim, depths, window_size...).
        backbone_stage: keep the backbone up to this feature stage (timm's `feature_info` index,
            negative from the end), e.g. -2 for EfficientNet's stride-16 map; default: the whole backbone.
        backbone_depths: backbone modules whose maps are concatenated, the deeper ones resized onto the
            first's grid (`ldcsf.models.backbones.ConcatenatedDepths`); default: the backbone's last map.
        train_backbone_blocks: take the backbone's last N blocks out of it and train them with the
            neck (`backbone_tail`, at a tenth of the learning rate): a frozen, cached backbone
            then ends N blocks earlier and only its last blocks adapt (EfficientNet-like backbones).
        stain_channels: add per-cell stain measures (haematoxylin and eosin density, nuclear
            crowding, unstained share; `ldcsf.models.stain_channels`) after the backbone's channels.
        pretrained: fetch the backbone's weights by name through timm.
        pretrained_file: load the backbone's weights from a local file instead.
        use_ldc / use_fr / use_resnet: ablation switches; each removes its module entirely.
        ldc_depth / ldc_kernel_size: depthwise convs in LDC and their kernel size.
        fr_reduction: channel reduction of the FR gate's hidden layer.
        resnet_blocks / resnet_planes: bottleneck blocks and their inner width (output = 4x).
        drop_rate: dropout before the head; drop_path_rate: stochastic depth inside Swin.
    """

    def __init__(
        self,
        labels: Sequence[str],
        backbone: str = "swin_tiny_patch4_window7_224",
        img_size: int | tuple[int, int] | None = None,
        backbone_kwargs: dict | None = None,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        backbone_stage: int | None = None,
        backbone_depths: Sequence[str] | None = None,
        train_backbone_blocks: int = 0,
        stain_channels: bool = False,
        use_ldc: bool = True,
        use_fr: bool = True,
        use_resnet: bool = True,
        ldc_depth: int = 2,
        ldc_kernel_size: int = 3,
        fr_reduction: int = 4,
        resnet_blocks: int = 2,
        resnet_planes: int = 128,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
    ):
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        net = create_backbone(
            backbone,
            img_size=None if img_size is None else tuple(img_size),
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            stage=backbone_stage,
            map_depths=backbone_depths,
            drop_path_rate=drop_path_rate,
            **(backbone_kwargs or {}),
        )
        if train_backbone_blocks and stain_channels:  # the measures would enter the trained blocks
            raise ValueError("train_backbone_blocks and stain_channels cannot be combined")
        map_channels = net.num_features  # the map the neck reads: the trained last blocks' output, when they train
        tail = split_last_blocks(net, backbone, int(train_backbone_blocks)) if train_backbone_blocks else None
        if stain_channels:
            from timm.data import resolve_model_data_config

            data = resolve_model_data_config(net)  # the normalisation the input arrives with
            net = StainChannels(net, data["mean"], data["std"])
        img_size = (input_size_of(net),) * 2 if img_size is None else tuple(img_size)
        check_gives_feature_map(backbone, net, img_size)
        channels = net.num_features if tail is None else map_channels
        ldc = LocalDepthConv(channels, ldc_depth, ldc_kernel_size) if use_ldc else None
        fr = FeatureReconstruction(channels, fr_reduction) if use_fr else None
        resnet = resnet_stage(channels, resnet_planes, resnet_blocks) if use_resnet else None
        num_features = resnet_planes * Bottleneck.expansion if use_resnet else channels
        super().__init__(labels, img_size, num_features, drop_rate)
        self.backbone = net
        self.backbone_tail = tail  # None unless train_backbone_blocks: trained, not cached
        self.fixed_input_size = getattr(net, "pretrained_cfg", {}).get("fixed_input_size", True)
        self.register_load_state_dict_pre_hook(_rename_swin_keys)
        # Absent modules are None, not Identity: they hold no parameters and show in repr.
        self.ldc = ldc
        self.fr = fr
        self.resnet = resnet

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last map as (N, C, h, w): Swin tokens or ViT tokens put back in 2-D."""
        self.check_input(x)
        return feature_map(self.backbone, self.backbone.forward_features(x))

    def backbone_module(self) -> nn.Module:
        return self.backbone

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_neck(self.forward_backbone(x))

    def forward_neck(self, x: torch.Tensor) -> torch.Tensor:
        """(The backbone's trained last blocks ->) LDC -> FR -> ResNet on the backbone's map (each skipped when ablated)."""
        if self.backbone_tail is not None:
            x = self.backbone_tail(x)
        if self.ldc is not None:
            x = self.ldc(x)
        if self.fr is not None:
            x = self.fr(x)
        if self.resnet is not None:
            x = self.resnet(x)
        return x


def _rename_swin_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before any backbone could be used call the backbone "swin"."""
    for key in [k for k in state_dict if k.startswith(prefix + "swin.")]:
        state_dict[prefix + "backbone." + key[len(prefix) + len("swin."):]] = state_dict.pop(key)
