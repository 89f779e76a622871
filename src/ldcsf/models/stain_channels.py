"""Per-cell stain measures beside a backbone's map: how much haematoxylin each cell holds.

Stroma is sparse in nuclei and tumour is crowded with them; classical tumour-stroma methods
threshold the haematoxylin channel of a colour deconvolution for this reason. On the masked
sources a rule this simple, with no training, ranks the stroma fraction across labs (the share of
tissue with little haematoxylin: Spearman 0.50 on GlaS, 0.66 on WSSS4LUAD; benchmarks/stain_rule.py),
so `StainChannels` hands the heads those measures per map cell, next to the backbone's learned
features, and the heads learn how far to trust them. On sources never trained on this helped lung
and cost colon (docs/results.md, "Stain measures beside the map"): an option, not the recipe.

Measures per cell, from the input tile (any view: on the Macenko view the stains are the
reference's, so the thresholds mean the same in every lab):

- mean haematoxylin and eosin optical density (Ruifrok & Johnston's vectors, scikit-image's
  `hed_from_rgb`, in optical-density units as `data.transforms.HEDJitter` uses them);
- the share of pixels whose haematoxylin, averaged over about 4 µm (5 px at 0.875 µm/px), is above
  0.15, 0.3 and 0.5: nuclear crowding at three strengths;
- the share of unstained pixels (mean optical density below torchstain's tissue floor, 0.15):
  lumen, fat, glass.

Plain tensor operations: the model still exports to ONNX and runs on a GPU; no weights, so a
frozen backbone with these channels is still cached once per tile.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import feature_map

#: Haematoxylin optical density above which a smoothed pixel counts as nuclear, three strengths.
NUCLEAR_OD = (0.15, 0.3, 0.5)
#: Side (px) of the box the haematoxylin is averaged over before the thresholds: about one nucleus.
NUCLEUS_PX = 5
#: Mean optical density below which a pixel took no stain (torchstain's tissue floor, beta).
UNSTAINED_OD = 0.15
#: Lowest RGB value in [0, 1] before the logarithm (one grey level).
_MIN_RGB = 1.0 / 255.0
MEASURES = ("haematoxylin", "eosin", *(f"nuclear>{t}" for t in NUCLEAR_OD), "unstained")


def stain_measures(rgb: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(N, len(MEASURES), h, w) stain measures of 0-1 RGB tiles (N, 3, H, W), pooled onto `grid`."""
    from skimage.color.colorconv import hed_from_rgb  # the same vectors as the HED jitter

    od = -torch.log(rgb.float().clamp(_MIN_RGB, 1.0))
    matrix = torch.as_tensor(hed_from_rgb, dtype=od.dtype, device=od.device)
    stains = torch.einsum("nchw,cs->nshw", od, matrix)
    haematoxylin, eosin = stains[:, 0:1], stains[:, 1:2]
    smoothed = F.avg_pool2d(haematoxylin, NUCLEUS_PX, stride=1, padding=NUCLEUS_PX // 2, count_include_pad=False)
    nuclear = [(smoothed > t).to(od.dtype) for t in NUCLEAR_OD]
    unstained = (od.mean(1, keepdim=True) < UNSTAINED_OD).to(od.dtype)
    measures = torch.cat([haematoxylin, eosin, *nuclear, unstained], dim=1)
    return F.adaptive_avg_pool2d(measures, tuple(int(v) for v in grid))


class StainChannels(nn.Module):
    """A backbone whose map carries `stain_measures` of each cell after its own channels.

    Args:
        net: the backbone (its `forward_features` gives the map).
        mean, std: the normalisation of the input, undone to measure the stains.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        # What the model, timm's data config and the feature cache read from a backbone.
        self.pretrained_cfg = getattr(net, "pretrained_cfg", {})
        self.output_fmt = "NCHW"
        self.map_depths = getattr(net, "map_depths", None)
        self.measure_names = list(MEASURES)  # in the feature cache's key: other thresholds, other maps
        self.num_features = int(net.num_features) + len(MEASURES)
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        maps = feature_map(self.net, self.net.forward_features(x))
        rgb = x * self.std.to(x.dtype) + self.mean.to(x.dtype)
        return torch.cat([maps, stain_measures(rgb, maps.shape[-2:]).to(maps.dtype)], dim=1)
