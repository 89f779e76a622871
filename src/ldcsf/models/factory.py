"""Named model variants and the one factory that builds them: `create_model("ldcsf_swin_tiny")`.

Each variant is a few lines stating its arguments, as in timm. Variants share the label head and
input conventions, so LDCSF and its baselines are interchangeable in training, evaluation and
slide inference.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .base import MultiLabelClassifier, resolve_labels


# The model classes are imported when a variant is built, not with the registry: they import timm
# (with torchvision, ~1 s), which reading a checkpoint's meta or running its exported file never needs.
def _ldcsf_model(**kwargs) -> MultiLabelClassifier:
    from .ldcsf import LDCSF

    return LDCSF(**kwargs)


def _timm_classifier(**kwargs) -> MultiLabelClassifier:
    from .baselines import TimmClassifier

    return TimmClassifier(**kwargs)


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[..., MultiLabelClassifier]
    description: str


_REGISTRY: dict[str, Variant] = {}


def register(description: str):
    def wrap(fn: Callable[..., MultiLabelClassifier]):
        _REGISTRY[fn.__name__] = Variant(fn.__name__, fn, description)
        return fn

    return wrap


# Architecture of the CPU-sized Swin: a Swin-T layout at half width, two blocks per stage and
# 4x4 windows, so that 128 px tiles (32x32 tokens) divide evenly at every stage.
_SWIN_MINI = dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=4)
# The smallest Swin that still has four stages and shifted windows; for tests only.
_SWIN_MICRO = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=4)
_SWIN_T = "swin_tiny_patch4_window7_224"


# -- LDCSF -------------------------------------------------------------------------------------
@register("LDCSF on any timm backbone: backbone=NAME (default Swin-T), input at its pretrained size")
def ldcsf(**kwargs) -> MultiLabelClassifier:
    return _ldcsf_model(**{"backbone": _SWIN_T, "resnet_planes": 128, **kwargs})


@register("LDCSF, paper scale: Swin-T backbone (ImageNet weights by name), 224 px")
def ldcsf_swin_tiny(**kwargs) -> MultiLabelClassifier:
    return _ldcsf_model(backbone=_SWIN_T, **{"img_size": 224, "resnet_planes": 128, **kwargs})


@register("LDCSF, CPU-trainable: Swin embed 48, depths 2-2-2-2, window 4, 128 px")
def ldcsf_swin_mini(**kwargs) -> MultiLabelClassifier:
    return _ldcsf_model(backbone=_SWIN_T, **{"img_size": 128, "backbone_kwargs": _SWIN_MINI, "resnet_planes": 64, **kwargs})


@register("LDCSF, for tests: Swin embed 16, depths 1-1-1-1, window 4, 64 px")
def ldcsf_swin_micro(**kwargs) -> MultiLabelClassifier:
    return _ldcsf_model(
        backbone=_SWIN_T,
        **{"img_size": 64, "backbone_kwargs": _SWIN_MICRO, "resnet_planes": 8, "resnet_blocks": 1, **kwargs},
    )


# -- baselines: the same backbones pooled, and ResNets ---------------------------------------
@register("baseline: plain Swin-T, pooled, linear head, 224 px")
def swin_tiny(**kwargs) -> MultiLabelClassifier:
    return _timm_classifier(backbone=_SWIN_T, **{"img_size": 224, "drop_path_rate": 0.1, **kwargs})


@register("baseline: plain Swin of ldcsf_swin_mini's size, 128 px")
def swin_mini(**kwargs) -> MultiLabelClassifier:
    return _timm_classifier(backbone=_SWIN_T, **{"img_size": 128, "backbone_kwargs": _SWIN_MINI, **kwargs})


@register("baseline: plain Swin of ldcsf_swin_micro's size, for tests, 64 px")
def swin_micro(**kwargs) -> MultiLabelClassifier:
    return _timm_classifier(backbone=_SWIN_T, **{"img_size": 64, "backbone_kwargs": _SWIN_MICRO, **kwargs})


@register("baseline: ResNet-18 (timm), 224 px")
def resnet18(**kwargs) -> MultiLabelClassifier:
    return _timm_classifier(backbone="resnet18", **{"img_size": 224, **kwargs})


@register("baseline: ResNet-50 (timm), 224 px")
def resnet50(**kwargs) -> MultiLabelClassifier:
    return _timm_classifier(backbone="resnet50", **{"img_size": 224, **kwargs})


# -- the factory -------------------------------------------------------------------------------
def list_models() -> list[str]:
    return list(_REGISTRY)


def describe_model(name: str) -> str:
    return _variant(name).description


def _variant(name: str) -> Variant:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(
    name: str,
    num_labels: int | None = None,
    labels: Sequence[str] | None = None,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    **kwargs,
) -> MultiLabelClassifier:
    """Build a named variant.

    Args:
        name: a variant from `list_models()`.
        num_labels: number of outputs (defaults to the paper's four labels).
        labels: label names; stored with the model (and its checkpoints).
        pretrained: fetch the backbone's weights by name through timm (online).
        pretrained_file: load the backbone's weights from a local `.safetensors`/`.pth` file.
        **kwargs: the variant's keyword arguments, e.g. `use_ldc=False`, `img_size=256`; and
            `area_head=True` for any variant: a per-position area-fraction head (see
            `MultiLabelClassifier.enable_area_head`; `area_head="exclusive"`: the labels and a
            "none" class share each position through a softmax); and `ensemble=K` (with `ensemble_seeds`, one
            per member): K members on one backbone, their outputs averaged (`ensemble.HeadEnsemble`);
            `ensemble_views` names the stain view each member reads ("plain" or "macenko").
    """
    variant = _variant(name)
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)):
        raise ValueError(f"num_labels must be an integer, got {num_labels!r}")
    if num_labels is not None and num_labels < 1:
        raise ValueError(f"num_labels must be at least 1, got {num_labels}")
    label_names = resolve_labels(num_labels, labels)
    # Not an argument of any variant: the area head sits on top of whichever map the variant makes.
    area_head = _area_head_arg(kwargs.pop("area_head", False))
    members, seeds = _ensemble_args(kwargs.pop("ensemble", 1), kwargs.pop("ensemble_seeds", None))
    views = kwargs.pop("ensemble_views", None)
    if views is not None and members < 2:
        raise ValueError(f"ensemble_views names a view per member of an ensemble (ensemble=K >= 2), got ensemble={members}")
    if members > 1:
        model = _build_ensemble(name, variant, members, seeds, area_head, label_names, pretrained, pretrained_file,
                                kwargs, views)
        model.model_cfg = {"name": name, "kwargs": {"labels": label_names, **copy.deepcopy(kwargs),
                                                    **({"area_head": area_head} if area_head else {}),
                                                    "ensemble": members, "ensemble_seeds": seeds,
                                                    **({"ensemble_views": list(model.views)} if views else {})}}
        return model
    model = _build_variant(name, variant, label_names, pretrained, pretrained_file, kwargs)
    if area_head:
        model.enable_area_head(exclusive=area_head == "exclusive")
        kwargs["area_head"] = area_head
    # Everything needed to rebuild the same architecture (weights come from a checkpoint).
    model.model_cfg = {"name": name, "kwargs": {"labels": label_names, **copy.deepcopy(kwargs)}}
    return model


def _area_head_arg(value) -> bool | str:
    """False, True (one sigmoid per label) or "exclusive" (labels share a position), with a one-line error."""
    if isinstance(value, bool) or value == "exclusive":
        return value
    raise ValueError(f"area_head must be true, false or \"exclusive\", got {value!r}")


def _ensemble_args(members, seeds) -> tuple[int, list[int]]:
    """(K, one seed per member) of the `ensemble`/`ensemble_seeds` arguments, with one-line errors."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"ensemble must be a whole number of members (1 or more), got {members!r}")
    seeds = list(range(members)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != members:
        raise ValueError(f"ensemble={members} needs {members} ensemble_seeds, got {len(seeds)}")
    return members, seeds


def _build_ensemble(name, variant, members, seeds, area_head, labels, pretrained, pretrained_file, kwargs, views=None):
    from .ensemble import HeadEnsemble

    built = []
    for seed in seeds:
        # Each member starts from its own seed; the caller's random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            member = _build_variant(name, variant, labels, pretrained, pretrained_file, kwargs)
            if area_head:
                member.enable_area_head(exclusive=area_head == "exclusive")
        built.append(member)
    # The Macenko view undoes and redoes the input's normalisation: the backbone's.
    data = built[0].data_config() if views and "macenko" in views else {}
    return HeadEnsemble(built, seeds, views, mean=data.get("mean"), std=data.get("std"))


def _build_variant(name, variant, label_names, pretrained, pretrained_file, kwargs) -> MultiLabelClassifier:
    try:
        return variant.build(labels=label_names, pretrained=pretrained, pretrained_file=pretrained_file, **kwargs)
    except TypeError as err:  # a keyword the variant (or timm below it) does not take
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        fixed = re.search(r"multiple values for keyword argument '(\w+)'", str(err))
        if fixed is not None:
            hint = "; for another backbone use create_model('ldcsf', backbone=...)" if fixed.group(1) == "backbone" else ""
            raise ValueError(f"model {name} fixes its argument {fixed.group(1)!r}{hint}") from err
        if unexpected is None:
            raise
        raise ValueError(f"model {name} has no argument {unexpected.group(1)!r} (arguments given: {kwargs})") from err


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
