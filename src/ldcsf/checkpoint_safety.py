"""What a checkpoint may say, checked before it is believed: digest, meta, no outside weights.

A checkpoint comes from anyone. Its weights carry a SHA-256 digest so damage (flipped bytes load
without any error from torch) is found on load; its meta is validated so a bad field gives one
line naming the file, not an index error later; and model arguments that would fetch or open
other weights (`pretrained`, `pretrained_file`, a hub name) are refused, because a checkpoint's
own weights are the only ones it may bring.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import torch

#: Model arguments that name weights to fetch or open; a checkpoint may not carry them.
WEIGHT_SOURCE_KEYS = frozenset({
    "pretrained", "pretrained_file", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
    "pretrained_path", "cache_dir", "hf_hub_id", "url", "file",
})
#: Markers of a name that would be resolved remotely or on disk by timm / huggingface_hub.
_REMOTE_MARKERS = ("hf-hub:", "hf_hub:", "local-dir:", "timm/", "://")
#: The checkpoint's input tile must be at least this many pixels wide to be a model input at all.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 4096


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_digest(path: Path, state_dict: Mapping[str, torch.Tensor], stored: str | None) -> str:
    """The weights' digest; ValueError when the checkpoint stored a different one."""
    actual = weights_digest(state_dict)
    if stored and stored != actual:
        raise ValueError(
            f"{path}: the weights are damaged: their SHA-256 differs from the one stored in the checkpoint "
            "(the file was altered or corrupted on disk or in transfer); use an intact copy"
        )
    return actual


def validate_meta(path: Path, meta, check_model_name: bool = True) -> None:
    """One-line ValueError naming `path` and the field for anything a prediction cannot use.

    `check_model_name=False` leaves out the model registry (which loads torch): for a meta whose
    model runs as an exported file, and is checked in full when the PyTorch model is built.
    """
    def bad(field: str, why: str) -> ValueError:
        return ValueError(f"{path}: checkpoint meta '{field}' {why}")

    if check_model_name:
        from .models import list_models

        if meta.model_name not in list_models():
            raise bad("model_name", f"names no known model ({meta.model_name!r})")
    labels = meta.labels
    if not isinstance(labels, list) or not labels or not all(isinstance(v, str) and v for v in labels):
        raise bad("labels", "must be a non-empty list of label names")
    if len(set(labels)) != len(labels):
        raise bad("labels", f"has a label twice ({labels})")
    thresholds = meta.thresholds
    if not isinstance(thresholds, list) or len(thresholds) != len(labels):
        raise bad("thresholds", f"must give one threshold per label ({len(labels)} labels, "
                                f"{len(thresholds) if isinstance(thresholds, list) else 'no list of'} thresholds)")
    if not all(_number(t) and 0.0 <= t <= 1.0 for t in thresholds):
        raise bad("thresholds", f"must be probabilities in [0, 1], got {thresholds}")
    if not isinstance(meta.input_size, int) or not MIN_INPUT_SIZE <= meta.input_size <= MAX_INPUT_SIZE:
        raise bad("input_size", f"must be a whole number of pixels in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}], got {meta.input_size!r}")
    from .wsi.readers import PLAUSIBLE_MPP

    if not _number(meta.mpp) or not PLAUSIBLE_MPP[0] <= meta.mpp <= PLAUSIBLE_MPP[1]:
        raise bad("mpp", f"must be a plausible µm/px in [{PLAUSIBLE_MPP[0]}, {PLAUSIBLE_MPP[1]}], got {meta.mpp!r}")
    for field in ("mean", "std"):
        value = getattr(meta, field)
        if not isinstance(value, list) or len(value) != 3 or not all(_number(v) for v in value):
            raise bad(field, f"must be three numbers (R, G, B), got {value!r}")
    if not all(v > 0 for v in meta.std):
        raise bad("std", f"must be positive, got {meta.std}")
    if meta.interpolation not in ("bilinear", "bicubic"):
        raise bad("interpolation", f"must be bilinear or bicubic, got {meta.interpolation!r}")
    if meta.stain_norm is not None and not _macenko_reference(meta.stain_norm):
        raise bad("stain_norm", "must be null or {method: macenko, stain_matrix: 3x2 numbers, "
                                "max_concentrations: 2 numbers}")
    if not isinstance(meta.model_kwargs, dict):
        raise bad("model_kwargs", "must be a mapping of model arguments")
    check_interval_calibration(path, getattr(meta, "interval_calibration", None))
    refuse_weight_sources(path, meta.model_kwargs)


def check_interval_calibration(path: Path, value: Any):
    """The meta's `interval_calibration` as used (None when absent); one-line ValueError naming `path` if bad."""
    from .analysis.interval_calibration import interval_calibration_from_dict

    if value is None:
        return None
    try:
        return interval_calibration_from_dict(value)
    except ValueError as err:
        raise ValueError(f"{path}: checkpoint meta 'interval_calibration' {err}") from None


def refuse_weight_sources(path: Path, kwargs: Any, where: str = "model_kwargs") -> None:
    """ValueError if the model arguments name weights to download or a file to open."""
    if isinstance(kwargs, dict):
        for key, value in kwargs.items():
            if key in WEIGHT_SOURCE_KEYS and value not in (None, False):
                raise ValueError(
                    f"{path}: checkpoint meta '{where}.{key}' asks to load outside weights ({value!r}); "
                    "a checkpoint may only use its own weights, refused"
                )
            refuse_weight_sources(path, value, f"{where}.{key}")
    elif isinstance(kwargs, (list, tuple)):
        for i, value in enumerate(kwargs):
            refuse_weight_sources(path, value, f"{where}[{i}]")
    elif isinstance(kwargs, str) and any(marker in kwargs for marker in _REMOTE_MARKERS):
        raise ValueError(
            f"{path}: checkpoint meta '{where}' names a remote or on-disk model ({kwargs!r}); "
            "a checkpoint may only use its own weights, refused"
        )


def _macenko_reference(value: Any) -> bool:
    if not isinstance(value, dict) or value.get("method") != "macenko":
        return False
    matrix, concentrations = value.get("stain_matrix"), value.get("max_concentrations")
    return (isinstance(matrix, list) and len(matrix) == 3
            and all(isinstance(row, list) and len(row) == 2 and all(_number(v) for v in row) for row in matrix)
            and isinstance(concentrations, list) and len(concentrations) == 2
            and all(_number(v) for v in concentrations))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
