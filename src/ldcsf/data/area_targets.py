"""Per-cell area targets from pixel masks, and transforms that move image and mask together.

A model's spatial map has (h, w) positions per tile; each position sees one cell of the tile.
Where a pixel mask exists, the target of a label at a cell is the fraction of the cell's pixels
of the mask classes mapped to that label (WSSS4LUAD: tumour -> tumor, stroma -> stroma,
normal -> non_tumor). Labels the mask scheme does not annotate are NaN (no supervision).
Augmentation must move the mask exactly as the image, so geometric steps run on both
(torchvision v2 transforms a `tv_tensors.Mask` with nearest-neighbour sampling), colour steps on
the image only.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from .masks import WSSS4LUAD, MaskScheme
from .transforms import HEDJitter

#: A cell with less than this share of annotated pixels gets no area target.
MIN_ANNOTATED_SHARE = 0.5


def cell_fractions(mask: np.ndarray | torch.Tensor, grid: tuple[int, int], labels: Sequence[str],
                   scheme: MaskScheme = WSSS4LUAD) -> torch.Tensor:
    """(L, h, w) area fraction of each label in each cell of a class-index mask; NaN = not annotated.

    Fractions are of all the cell's pixels, background included: a cell half background and half
    stroma has stroma 0.5. Cells are equal parts of the mask (adaptive average pooling). Pixels of
    the scheme's `unannotated` value count for no class: fractions are then of the cell's
    annotated pixels, and a cell less than half annotated is NaN (too little seen to say).
    """
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).long()
    if mask.ndim == 3:
        mask = mask[0]
    known = None
    if scheme.unannotated is not None and bool((mask == scheme.unannotated).any()):
        known = mask != scheme.unannotated
        mask = torch.where(known, mask, torch.zeros_like(mask))  # placeholder, zeroed out below
    values = sorted(scheme.classes)
    if int(mask.max()) > max(values) or int(mask.min()) < 0:
        raise ValueError(f"mask values outside the scheme {scheme.classes}")
    one_hot = F.one_hot(mask, num_classes=max(values) + 1).permute(2, 0, 1).float()[None]
    share = None
    if known is not None:
        one_hot = one_hot * known.float()
        share = F.adaptive_avg_pool2d(known.float()[None, None], grid)[0, 0]
    pooled = F.adaptive_avg_pool2d(one_hot, grid)[0]  # (classes, h, w)
    if share is not None:
        pooled = pooled / share.clamp_min(1e-6)
    out = torch.full((len(labels), *grid), float("nan"))
    for value, name in scheme.classes.items():
        label = scheme.label_of.get(name)
        if label is None or label not in labels:
            continue
        i = list(labels).index(label)
        out[i] = torch.nan_to_num(out[i], nan=0.0) + pooled[value]
    if share is not None:
        out[:, share < MIN_ANNOTATED_SHARE] = float("nan")
    return out


class RandomRot90Pair(v2.Transform):
    """Rotate every input of one call (image and mask) by the same multiple of 90 degrees."""

    def make_params(self, flat_inputs: list) -> dict:
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt, params: dict):
        if not params["k"] or not isinstance(inpt, torch.Tensor):
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt, params["k"], dims=(-2, -1)), like=inpt) \
            if isinstance(inpt, tv_tensors.TVTensor) else torch.rot90(inpt, params["k"], dims=(-2, -1))


class PairedTransform:
    """(PIL image, mask array or None) -> (normalised image tensor, mask tensor (H, W) or None).

    The same augmentation as `build_transforms` (resized crop with `scale`, flips, 90-degree
    rotations, colour and HED jitter), with the geometric part applied to the mask too.
    """

    def __init__(self, input_size: int, mean: Sequence[float], std: Sequence[float], train: bool,
                 hed_jitter: float = 0.05, color_jitter: float = 0.1, scale: tuple[float, float] = (0.6, 1.0),
                 interpolation: str = "bilinear", stain_normalizer: Callable[[Image.Image], Image.Image] | None = None):
        # The image is resampled with the backbone's interpolation; the mask always by nearest
        # neighbour (torchvision's rule for a tv_tensors.Mask), so class indices stay indices.
        mode = v2.InterpolationMode(interpolation)
        self.stain_normalizer = stain_normalizer
        if train:
            self.geometric = v2.Compose([
                v2.RandomResizedCrop(input_size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=mode, antialias=True),
                v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90Pair(),
            ])
        else:
            self.geometric = v2.Resize((input_size, input_size), interpolation=mode, antialias=True)
        colour: list = []
        if train and color_jitter > 0:
            colour.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter,
                                         saturation=color_jitter, hue=min(color_jitter / 4, 0.5)))
        colour.append(v2.ToDtype(torch.float32, scale=True))
        if train and hed_jitter > 0:
            colour.append(HEDJitter(hed_jitter))
        colour.append(v2.Normalize(mean=list(mean), std=list(std)))
        self.colour = v2.Compose(colour)

    def __call__(self, image: Image.Image, mask: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.stain_normalizer is not None:
            image = self.stain_normalizer(image)
        pixels = tv_tensors.Image(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1))
        if mask is None:
            return self.colour(self.geometric(pixels)), None
        if mask.shape != tuple(pixels.shape[-2:]):
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} px but its image is "
                             f"{pixels.shape[-1]}x{pixels.shape[-2]} px")
        pixels, moved = self.geometric(pixels, tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64))[None]))
        return self.colour(pixels), moved.as_subclass(torch.Tensor)[0]
