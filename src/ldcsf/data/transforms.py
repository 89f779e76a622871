"""Image transforms for H&E tiles: geometric and stain augmentation, stain normalisation.

Built on torchvision.transforms.v2. Two pieces are written here because torchvision has no
equivalent: exact 90-degree rotations (v2.RandomRotation interpolates arbitrary angles) and HED
jitter. HED jitter is done in torch rather than by calling skimage's rgb2hed/hed2rgb per image
so it runs on tensors (in DataLoader workers or batched on a GPU); it uses skimage's own stain
matrices, so the colour deconvolution is the same as skimage's (tested).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

log = logging.getLogger(__name__)

_MIN_RGB = 1e-6  # the floor skimage uses before taking the log


class RandomRot90(torch.nn.Module):
    """Rotate by 0, 90, 180 or 270 degrees, uniformly: tissue has no preferred orientation."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(image, k, dims=(-2, -1)) if k else image


class HEDJitter(torch.nn.Module):
    """Random perturbation of haematoxylin, eosin and DAB concentrations (Tellez et al. 2018).

    For a float RGB tensor (..., 3, H, W) in [0, 1]: optical density OD = -log(rgb), stain
    concentrations C = OD @ hed_from_rgb (skimage's matrix), C' = C * alpha + beta with
    alpha ~ U(1 - sigma, 1 + sigma) and beta ~ U(-sigma, sigma) per stain, drawn once per image,
    and back with rgb = exp(-(C' @ rgb_from_hed)). C is in optical-density units: skimage's
    rgb2hed divides it by -log(1e-6), which would make beta about 14 times stronger.
    """

    def __init__(self, sigma: float = 0.05) -> None:
        super().__init__()
        from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

        self.sigma = float(sigma)
        self.register_buffer("hed_from_rgb", torch.as_tensor(hed_from_rgb, dtype=torch.float32), persistent=False)
        self.register_buffer("rgb_from_hed", torch.as_tensor(rgb_from_hed, dtype=torch.float32), persistent=False)

    def to_hed(self, rgb: torch.Tensor) -> torch.Tensor:
        od = -torch.log(rgb.clamp_min(_MIN_RGB)).movedim(-3, -1)
        return od @ self.hed_from_rgb  # (..., H, W, 3)

    def to_rgb(self, hed: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(hed @ self.rgb_from_hed)).clamp(0.0, 1.0).movedim(-1, -3)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return image
        batch_shape = image.shape[:-3]
        shape = (*batch_shape, 1, 1, 3)
        alpha = 1.0 + (torch.rand(shape, device=image.device) * 2 - 1) * self.sigma
        beta = (torch.rand(shape, device=image.device) * 2 - 1) * self.sigma
        return self.to_rgb(self.to_hed(image) * alpha + beta).to(image.dtype)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class MacenkoNormalizer:
    """Macenko stain normalisation (torchstain) towards a reference stain appearance.

    The reference is torchstain's default (the stain matrix and concentrations of Macenko et al.
    2009) or fitted to one reference image. It is a handful of numbers (`state()`), stored in the
    checkpoint so that slides are normalised exactly as the training tiles were. Tiles with too
    little tissue to estimate stain vectors (background, blank) are returned unchanged rather
    than failing the whole batch.
    """

    METHOD = "macenko"

    def __init__(self, reference: Image.Image | str | Path | None = None) -> None:
        import torchstain

        self._normalizer = torchstain.normalizers.MacenkoNormalizer(backend="torch")
        if reference is None:
            return
        if not isinstance(reference, Image.Image):
            from .dataset import load_rgb

            reference = load_rgb(reference)
        try:
            self._normalizer.fit(_to_chw_uint8(reference))
        except (RuntimeError, IndexError) as err:  # torchstain's errors when no tissue pixels remain
            raise ValueError(f"stain reference image has too little tissue for Macenko fitting ({err})") from None

    def state(self) -> dict:
        """The reference as plain numbers (for a checkpoint): stain matrix (3x2) and max concentrations."""
        return {
            "method": self.METHOD,
            "stain_matrix": self._normalizer.HERef.tolist(),
            "max_concentrations": self._normalizer.maxCRef.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "MacenkoNormalizer":
        if state.get("method") != cls.METHOD:
            raise ValueError(f"unknown stain normalisation {state.get('method')!r} (known: {cls.METHOD})")
        normalizer = cls()
        normalizer._normalizer.HERef = torch.tensor(state["stain_matrix"], dtype=torch.float32)
        normalizer._normalizer.maxCRef = torch.tensor(state["max_concentrations"], dtype=torch.float32)
        return normalizer

    def normalize_array(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> normalised RGB uint8 (H, W, 3); unchanged when it cannot be estimated."""
        try:
            normed, _, _ = self._normalizer.normalize(I=torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1),
                                                      stains=False)
        except (RuntimeError, IndexError):
            return rgb
        return normed.clamp(0, 255).to(torch.uint8).numpy()

    def __call__(self, image: Image.Image) -> Image.Image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        normed = self.normalize_array(rgb)
        return image if normed is rgb else Image.fromarray(normed)


def stain_normalizer_from(state: dict | None) -> MacenkoNormalizer | None:
    """The normaliser a checkpoint's `stain_norm` entry describes (None: no normalisation)."""
    return None if not state else MacenkoNormalizer.from_state(state)


def build_transforms(
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    hed_jitter: float = 0.05,
    color_jitter: float = 0.1,
    stain_normalizer: Callable[[Image.Image], Image.Image] | None = None,
    interpolation: str = "bilinear",
    scale: tuple[float, float] = (0.6, 1.0),
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised float tensor (3, input_size, input_size).

    Train: mild random resized crop (`scale`, by default 0.6-1 of the area, so a tile keeps most
    of its tissue and its labels stay true), flips, 90-degree rotations, colour jitter, HED jitter. Eval: resize.
    `interpolation` is the backbone's (timm's pretrained config), antialiased either way.
    """
    mode = v2.InterpolationMode(interpolation)
    steps: list[Callable] = []
    if stain_normalizer is not None:
        steps.append(stain_normalizer)
    steps.append(v2.ToImage())
    if train:
        steps += [
            v2.RandomResizedCrop(input_size, scale=tuple(scale), ratio=(3 / 4, 4 / 3), interpolation=mode, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(),
        ]
        if color_jitter > 0:
            # Hue shifts are kept small: hue carries the H vs E distinction.
            steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter,
                                        saturation=color_jitter, hue=min(color_jitter / 4, 0.5)))
    else:
        steps.append(v2.Resize((input_size, input_size), interpolation=mode, antialias=True))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train and hed_jitter > 0:
        steps.append(HEDJitter(hed_jitter))
    steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(steps)


def eval_transforms(input_spec) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform of an `InputSpec` (or of a checkpoint meta's): stain normalisation,
    resize, normalise."""
    spec = getattr(input_spec, "input_spec", input_spec)  # a CheckpointMeta carries its spec
    return build_transforms(spec.size, spec.mean, spec.std, train=False,
                            stain_normalizer=stain_normalizer_from(spec.stain_norm), interpolation=spec.interpolation)


def _to_chw_uint8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
