"""Creating timm backbones and loading their weights from a name or a local file.

Weights come three ways: `pretrained=True` (timm fetches them by name, e.g. from the Hugging Face
hub, when the machine is online), `pretrained_file=PATH` (a `.safetensors`/`.pth`/`.bin` file on
disk, loaded offline), or none (random initialisation).
"""

from __future__ import annotations

import sys
from pathlib import Path

import timm
import torch
from torch import nn

#: Keys a checkpoint file commonly nests its weights under.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
#: Prefixes that training frameworks add in front of backbone keys.
_STRIP_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or a torch file, safely (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the many ways a file can be damaged all mean the same to a user
        raise ValueError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from err
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds no state dict of tensors")
    return state


def _strip_prefixes(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    own = set(model.state_dict())
    for prefix in _STRIP_PREFIXES:
        if not any(k in own for k in state) and any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local weights file into a timm backbone, ignoring any classifier head.

    timm's own `checkpoint_filter_fn` for the architecture adapts foreign layouts (e.g. the
    original Swin release, or a different window size); the classifier is dropped because our
    head has its own label count.
    """
    state = _strip_prefixes(read_state_dict(path), backbone)
    filter_fn = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, backbone)
    head_prefixes = ("head.", "fc.", "classifier.")
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    result = backbone.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(head_prefixes)]
    # Buffers that timm recomputes (relative position index, attention masks) may be absent.
    missing = [k for k in missing if not k.endswith(("relative_position_index", "attn_mask"))]
    if missing:
        raise ValueError(f"{path}: weights do not fit the backbone; missing {len(missing)} keys, e.g. {missing[:3]}")


def create_backbone(
    name: str,
    *,
    img_size: tuple[int, int] | None = None,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model without classifier or pooling, returning its last feature map."""
    if img_size is not None:
        kwargs["img_size"] = img_size
    try:
        model = timm.create_model(
            name,
            pretrained=pretrained and pretrained_file is None,
            num_classes=0,
            global_pool="",
            **kwargs,
        )
    except RuntimeError as err:
        if pretrained and "Unknown model" not in str(err):
            raise RuntimeError(
                f"could not fetch pretrained weights for {name!r} ({err}); when offline, download them "
                f"once and pass pretrained_file=PATH"
            ) from err
        raise
    if pretrained_file is not None:
        load_backbone_weights(model, pretrained_file)
    return model


def backbone_output_is_nhwc(backbone: nn.Module) -> bool:
    """timm transformers with hierarchical stages (Swin) return NHWC maps; CNNs return NCHW."""
    return str(getattr(backbone, "output_fmt", "NCHW")) == "NHWC"
