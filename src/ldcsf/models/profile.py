"""Size and cost of a model variant: parameters and FLOPs per image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .factory import count_parameters, create_model


@dataclass
class ModelProfile:
    name: str
    params: int
    input_size: int
    gflops: float | None = None


def count_flops(model: torch.nn.Module, input_size: int) -> int:
    """FLOPs of one forward pass of one image (PyTorch's own counter: a multiply-add is 2 FLOPs)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    return counter.get_total_flops()


def model_profile(name: str, flops: bool = False, **kwargs) -> ModelProfile:
    model = create_model(name, **kwargs)
    size = int(model.img_size[0])
    gflops = count_flops(model, size) / 1e9 if flops else None
    return ModelProfile(name=name, params=count_parameters(model), input_size=size, gflops=gflops)
