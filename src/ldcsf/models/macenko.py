"""Macenko stain normalisation of a batch, in plain tensor operations (exports to ONNX, runs on a GPU).

torchstain's `MacenkoNormalizer` (what `data.transforms.MacenkoNormalizer` wraps) normalises one
image at a time and uses `torch.linalg.eigh`, `lstsq` and `kthvalue` on however many tissue pixels
an image has: none of that exports to ONNX, and a Python loop over tiles cannot run inside a
model. This is the same method on a whole batch (N, 3, H, W) with fixed shapes:

- tissue pixels (every channel's optical density >= `beta`) are a mask, not a selection;
- the plane of the two largest principal directions of their optical densities is the plane
  orthogonal to the covariance's smallest eigenvector, found in closed form (the trigonometric
  solution of the 3x3 characteristic polynomial, then a cross product of two rows of A - λI);
- in that plane the angles are measured from the mean tissue direction, so they never wrap
  around ±π (an eigenvector's sign is arbitrary; torchstain's angles wrap when it comes out
  negative);
- percentiles are torchstain's (nearest rank, `round` half to even), over the tissue pixels by
  a mask;
- concentrations solve the 3x2 least-squares system through its 2x2 normal equations.

Where torchstain would fail (too few tissue pixels) or the estimate is not finite, the image is
returned unchanged, as `data.transforms.MacenkoNormalizer` does. On real tiles the result is
torchstain's to within a grey level on nearly every pixel (tests/test_stain_views.py).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

#: torchstain's reference stains (Macenko et al. 2009): H and E optical-density columns, and the
#: 99th percentile of each stain's concentration.
REFERENCE_STAINS = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
REFERENCE_MAX_CONCENTRATIONS = (1.9705, 1.0308)
#: torchstain's defaults: transmitted light, angle percentile, optical-density floor of tissue.
LIGHT, ALPHA, BETA = 240.0, 1.0, 0.15
#: Fewer tissue pixels than this and an image is returned as it came (torchstain fails below 2).
MIN_TISSUE_PIXELS = 2


def _percentile(values: torch.Tensor, q: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """torchstain's `percentile` of each row of `values` (R, P): the value of rank
    round(q / 100 (n - 1)) in increasing order (nearest rank, half to even), over the row's `valid`
    entries (n of them; all when None). A percentile lies within q % of one end, so only that end
    is sorted (`topk`, which exports as ONNX TopK), not the whole row."""
    width = values.shape[1]
    count = torch.full_like(values[:, 0], float(width)) if valid is None else valid.to(values.dtype).sum(1)
    rank = torch.round((count - 1).clamp_min(0) * (q / 100.0)).long()
    from_top = q > 50
    end = min(width, math.ceil(min(q, 100 - q) / 100 * (width - 1) + 0.5) + 1)
    if valid is not None:  # the others sorted past the end that is kept
        values = torch.where(valid, values, torch.full_like(values, -1e9 if from_top else 1e9))
    kept = torch.topk(values, end, dim=1, largest=from_top, sorted=True).values
    place = ((count.long() - 1 - rank) if from_top else rank).clamp(0, end - 1)
    return kept.gather(1, place.unsqueeze(1)).squeeze(1)


def _smallest_eigenvector(cov: torch.Tensor) -> torch.Tensor:
    """Unit eigenvector of the smallest eigenvalue of each symmetric 3x3 matrix (N, 3, 3) -> (N, 3).

    Eigenvalues by the trigonometric solution of the characteristic polynomial (Smith 1961); the
    eigenvector is the longest cross product of two rows of (A - λ I), which is orthogonal to
    both and so spans its null space.
    """
    a = cov
    eye = torch.eye(3, dtype=a.dtype, device=a.device)
    q = (a[:, 0, 0] + a[:, 1, 1] + a[:, 2, 2]) / 3
    off = a[:, 0, 1] ** 2 + a[:, 0, 2] ** 2 + a[:, 1, 2] ** 2
    p = torch.sqrt(((((a[:, 0, 0] - q) ** 2 + (a[:, 1, 1] - q) ** 2 + (a[:, 2, 2] - q) ** 2) + 2 * off) / 6)
                   .clamp_min(1e-30))
    b = (a - q[:, None, None] * eye) / p[:, None, None]
    half_det = _det3(b) / 2
    phi = torch.acos(half_det.clamp(-1.0, 1.0)) / 3
    smallest = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    shifted = a - smallest[:, None, None] * eye
    r0, r1, r2 = shifted[:, 0], shifted[:, 1], shifted[:, 2]
    candidates = torch.stack([torch.cross(r0, r1, dim=1), torch.cross(r0, r2, dim=1), torch.cross(r1, r2, dim=1)], 1)
    lengths = candidates.norm(dim=2)
    best = candidates.gather(1, lengths.argmax(1)[:, None, None].expand(-1, 1, 3)).squeeze(1)
    return best / best.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _det3(m: torch.Tensor) -> torch.Tensor:
    """Determinants of (N, 3, 3) matrices written out (ONNX has Det, but not every runtime for every type)."""
    return (m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
            - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
            + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0]))


def macenko_normalize(rgb: torch.Tensor, stains: torch.Tensor, max_concentrations: torch.Tensor, *,
                      whole_levels: bool = True, light: float = LIGHT, alpha: float = ALPHA,
                      beta: float = BETA) -> torch.Tensor:
    """Macenko-normalise a batch of RGB images (N, 3, H, W), values 0-255 (float), towards
    `stains` (3, 2: H and E optical-density columns) and `max_concentrations` (2,).

    Returns values 0-255 (float): whole grey levels, as torchstain's output cast to uint8, or with
    `whole_levels=False` unrounded (no step where two runtimes' last float digits could differ);
    an image with too little tissue to estimate its stains comes back unchanged.
    """
    n, _, h, w = rgb.shape
    work = rgb.float()
    od = -torch.log((work.reshape(n, 3, h * w) + 1) / light)  # (N, 3, P): channels first, pixels contiguous
    tissue = (od >= beta).all(dim=1)  # (N, P)
    weight = tissue.to(od.dtype).unsqueeze(1)
    count = weight.sum(2).squeeze(1)  # (N,)
    mean = (od * weight).sum(2) / count.clamp_min(1)[:, None]  # (N, 3)
    centred = (od - mean[:, :, None]) * weight
    cov = centred @ centred.transpose(1, 2) / (count - 1).clamp_min(1)[:, None, None]

    # An orthonormal basis of the plane of the two largest directions, its first axis along the
    # mean tissue direction: tissue angles then cluster around 0 and never wrap.
    normal = _smallest_eigenvector(cov)
    first = mean - (mean * normal).sum(1, keepdim=True) * normal
    first = first / first.norm(dim=1, keepdim=True).clamp_min(1e-30)
    second = torch.cross(normal, first, dim=1)
    projected = torch.stack([first, second], 1) @ od  # (N, 2, P)
    angles = torch.atan2(projected[:, 1], projected[:, 0])
    low, high = _percentile(angles, alpha, tissue), _percentile(angles, 100 - alpha, tissue)

    def direction(angle: torch.Tensor) -> torch.Tensor:
        return first * torch.cos(angle)[:, None] + second * torch.sin(angle)[:, None]

    v_low, v_high = direction(low), direction(high)
    # torchstain's rule: haematoxylin is the vector with the larger red optical density.
    low_is_h = (v_low[:, 0] > v_high[:, 0])[:, None]
    h_vec, e_vec = torch.where(low_is_h, v_low, v_high), torch.where(low_is_h, v_high, v_low)
    he = torch.stack([h_vec, e_vec], dim=2)  # (N, 3, 2)

    # Least squares for every pixel: C = (HEᵀ HE)⁻¹ HEᵀ od, with the 2x2 inverse written out.
    gram = he.transpose(1, 2) @ he
    det = gram[:, 0, 0] * gram[:, 1, 1] - gram[:, 0, 1] * gram[:, 1, 0]
    inverse = torch.stack([torch.stack([gram[:, 1, 1], -gram[:, 0, 1]], 1),
                           torch.stack([-gram[:, 1, 0], gram[:, 0, 0]], 1)], 1) / det[:, None, None]
    concentrations = (inverse @ he.transpose(1, 2)) @ od  # (N, 2, P)
    max_c = _percentile(concentrations.reshape(n * 2, h * w), 99).reshape(n, 2)

    scaled = concentrations * (max_concentrations.to(od.dtype)[None, :] / max_c)[..., None]
    normed = light * torch.exp(-(stains.to(od.dtype)[None] @ scaled))  # (N, 3, P)
    normed = normed.clamp(0.0, 255.0).reshape(n, 3, h, w)
    if whole_levels:
        normed = torch.floor(normed)

    usable = (count >= MIN_TISSUE_PIXELS) & torch.isfinite(normed).flatten(1).all(1)
    return torch.where(usable[:, None, None, None], normed, work)


class MacenkoView(nn.Module):
    """The Macenko-normalised view of a model's input, inside the model.

    Takes the input as the model gets it (RGB scaled to 0-1 and normalised by `mean`/`std`),
    recovers its grey levels, normalises their stains towards the reference (`stains`,
    `max_concentrations`: a `MacenkoNormalizer.state()`'s numbers; torchstain's by default) and
    returns them normalised the same way. The normalised levels are not rounded to whole ones
    (within one level of torchstain's): the view is continuous, so an exported copy of the model
    computes what PyTorch does.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 stains: Sequence[Sequence[float]] = REFERENCE_STAINS,
                 max_concentrations: Sequence[float] = REFERENCE_MAX_CONCENTRATIONS) -> None:
        super().__init__()
        # Not saved with the weights: they are settings the model's arguments rebuild (the input's
        # normalisation, the reference's constants), and a float16 copy of them would shift every stain.
        as_buffer = dict(dtype=torch.float32)
        self.register_buffer("mean", torch.tensor(list(mean), **as_buffer).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), **as_buffer).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("stains", torch.tensor([list(r) for r in stains], **as_buffer), persistent=False)
        self.register_buffer("max_concentrations", torch.tensor(list(max_concentrations), **as_buffer),
                             persistent=False)
        if self.stains.shape != (3, 2) or self.max_concentrations.shape != (2,):
            raise ValueError(f"a Macenko reference is 3x2 stains and 2 maxima, got {tuple(self.stains.shape)} "
                             f"and {tuple(self.max_concentrations.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 whatever the model runs in: a 3x3 covariance and its eigenvector in float16
        # (autocast's matmuls) would lose the stain directions.
        with torch.autocast(device_type=x.device.type, enabled=False):
            grey = torch.round((x.float() * self.std.float() + self.mean.float()) * 255).clamp(0.0, 255.0)
            normed = macenko_normalize(grey, self.stains.float(), self.max_concentrations.float(), whole_levels=False)
            return ((normed / 255 - self.mean.float()) / self.std.float()).to(x.dtype)

    def reference(self) -> dict:
        """The reference as `MacenkoNormalizer.state()` writes it."""
        return {"method": "macenko", "stain_matrix": self.stains.tolist(),
                "max_concentrations": self.max_concentrations.tolist()}
