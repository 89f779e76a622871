"""The surface every ldcsf classifier shares: labels, input checks, pooled and spatial heads.

A classifier maps an RGB tile (N, 3, H, W) to one logit per label. Subclasses only say how the
feature map (N, C, h, w) is made (`forward_features`); pooling and the head live here so that
the LDCSF model and the baselines are scored with exactly the same head.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import default_labels

#: The paper's labels, in the order of its result table (defined in `ldcsf.labels`; kept here by name).
DEFAULT_LABELS: tuple[str, ...] = default_labels()


def resolve_labels(num_labels: int | None, labels: Sequence[str] | None) -> list[str]:
    """Turn `num_labels` and/or `labels` into a validated list of label names."""
    if labels is not None:
        labels = [str(name) for name in labels]
        if num_labels is not None and num_labels != len(labels):
            raise ValueError(f"num_labels={num_labels} but {len(labels)} label names were given: {labels}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"label names must be unique, got {labels}")
    elif num_labels is None or num_labels == len(DEFAULT_LABELS):
        labels = list(DEFAULT_LABELS)
    else:
        labels = [f"label_{i}" for i in range(num_labels)]
    if len(labels) < 1:
        raise ValueError(f"num_labels must be at least 1, got {len(labels)}")
    return labels


def softmax_share_logits(scores: torch.Tensor, num_labels: int) -> torch.Tensor:
    """logit(softmax(scores)[:, c]) for the first `num_labels` of the (N, C, h, w) scores.

    The logit of a softmax share is z_c - logsumexp(z_k, k != c), computed that way so it stays
    finite where one class takes nearly all of a position (log p - log(1 - p) would not). The
    log-sum-exp is written out (max, then exp and sum) because OpenVINO reads the ONNX graph of
    `torch.logsumexp` wrongly (shares off by up to 0.25 against PyTorch and ONNX Runtime).
    """
    shares = []
    for label in range(num_labels):
        others = scores.index_select(1, torch.tensor([k for k in range(scores.shape[1]) if k != label],
                                                     device=scores.device))
        peak = others.amax(1, keepdim=True)
        shares.append(scores[:, label:label + 1] - peak - torch.log(torch.exp(others - peak).sum(1, keepdim=True)))
    return torch.cat(shares, dim=1)


class MultiLabelClassifier(nn.Module):
    """Base class: one logit per label; apply a sigmoid for probabilities.

    Args:
        labels: label names, one output each.
        img_size: the (height, width) the model accepts.
        num_features: channels of the map `forward_features` returns.
        drop_rate: dropout before the linear head.
    """

    #: Swin needs exactly its input size; CNNs accept any size (set per subclass).
    fixed_input_size: bool = True

    def __init__(self, labels: Sequence[str], img_size: tuple[int, int], num_features: int, drop_rate: float = 0.0):
        super().__init__()
        self.labels = list(labels)
        self.num_labels = len(self.labels)
        self.img_size = tuple(img_size)
        self.num_features = num_features
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(num_features, self.num_labels)
        #: Optional per-position area head (see `enable_area_head`); None keeps the paper's model.
        self.area_head: nn.Conv2d | None = None
        self.area_exclusive = False
        #: How to rebuild this model: set by the factory (`ldcsf.models.create_model`).
        self.model_cfg: dict = {}

    # -- input ---------------------------------------------------------------------------------
    def data_config(self) -> dict:
        """How to prepare input: size, and the mean/std/interpolation of the backbone's weights.

        Read from timm's pretrained config of the backbone (`self.backbone`, set by subclasses), so
        a backbone trained with other statistics than ImageNet's (EfficientNet-Lite: 0.5/0.5,
        pathology foundation models: their own) is fed what it was trained on.
        """
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(self.backbone)
        return {
            "input_size": int(self.img_size[0]),
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
            "interpolation": str(cfg.get("interpolation", "bilinear")),
        }

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input the model cannot take."""
        name = self.model_cfg.get("name", type(self).__name__)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} expects a batch of RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
        if self.fixed_input_size and tuple(x.shape[-2:]) != self.img_size:
            h, w = self.img_size
            raise ValueError(
                f"{name} expects input of size {h}x{w} px, got {x.shape[-2]}x{x.shape[-1]} "
                f"(resize tiles to {h}x{w}, or build the model with img_size={h})"
            )

    # -- the three-method surface (as in timm) ---------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the feature map (N, C, h, w) the head pools."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global-average-pool the map and apply the linear head."""
        x = self.head_drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- backbone / neck split (training on cached backbone features) ------------------------------
    def backbone_module(self) -> nn.Module:
        """The pretrained feature extractor (what `freeze_backbone` freezes)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its backbone")

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's (N, C, h, w) map; `forward_neck(forward_backbone(x)) == forward_features(x)`."""
        return self.forward_features(x)

    def forward_neck(self, x: torch.Tensor) -> torch.Tensor:
        """What sits between the backbone and the head (nothing here; LDC, FR, ResNet in LDCSF)."""
        return x

    # -- spatial output ------------------------------------------------------------------------
    def spatial_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Per-position logits (N, num_labels, h, w) from a feature map, before pooling.

        The head is linear, so the mean of this map over positions equals the pooled logits
        (without dropout): each position is the evidence that part of the tile contributes.
        """
        weight = self.head.weight[:, :, None, None]
        return F.conv2d(features, weight, self.head.bias)

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """Per-label logit map for a batch of images: a coarse sub-tile map."""
        return self.spatial_logits(self.forward_features(x))

    # -- area head -------------------------------------------------------------------------------
    def enable_area_head(self, exclusive: bool = False) -> None:
        """Add a 1x1-conv head that estimates, per map position, the area fraction of each label.

        It is separate from the presence head: presence is pooled by the mean of logits, and a
        label covering 10 % of a tile must be *present* (high pooled logit) while most positions
        hold none of it (low area); one head cannot be trained to both.

        `exclusive`: the labels share each position's area with one another and with an extra
        "none of them" class (a softmax over L + 1 outputs, as a segmentation head shares a pixel),
        instead of one independent sigmoid per label. `area_logits` then returns the logit of
        each label's softmax share, so every reader still applies a sigmoid.
        """
        self.area_exclusive = bool(exclusive)
        self.area_head = nn.Conv2d(self.num_features, self.num_labels + self.area_exclusive, kernel_size=1)

    @property
    def has_area_head(self) -> bool:
        return self.area_head is not None

    def area_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Per-position area logits (N, num_labels, h, w); sigmoid gives each label's area fraction."""
        if self.area_head is None:
            raise ValueError("this model has no area head (build it with area_head=True)")
        scores = self.area_head(features)
        return softmax_share_logits(scores, self.num_labels) if self.area_exclusive else scores

    def forward_with_areas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled presence logits, area logit map or None) from one pass through the network."""
        features = self.forward_features(x)
        areas = self.area_logits(features) if self.area_head is not None else None
        return self.forward_head(features), areas
