"""The model's input: what a tile must be before the model sees it, in one frozen value.

    spec = InputSpec.from_model(model, mpp=0.5)     # size, mean/std, interpolation from the backbone
    spec.size, spec.mpp, spec.mean, spec.std, spec.interpolation, spec.stain_norm

Made once (training: from the model and the training options; prediction: from the checkpoint,
`CheckpointMeta.input_spec`) and handed unchanged to whatever prepares or records input: the data
module, the LightningModule, the checkpoint's meta, the predictor and the slide's tile dataset.
As timm's `pretrained_cfg` travels with timm weights, this travels with ldcsf weights.

Three µm/px live in ldcsf and are not the same number:
- `InputSpec.mpp`: the µm per pixel of the model's input (one input pixel covers this much tissue);
  saved as the checkpoint's "mpp".
- `TrainConfig.mpp` / `TrainConfig.tile_mpp`: training options from which `InputSpec.mpp` is made
  (`ldcsf.training.train.effective_mpp`).
- `SlideSettings.mpp`: a slide's own scan resolution, overriding what its file says (`--mpp` of
  `ldcsf slide`); tiles are cut from the slide so that they come out at `InputSpec.mpp`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

#: Default µm/px of the model's input: 0.5 µm/px, i.e. a 20x objective scan.
DEFAULT_MPP = 0.5
#: ImageNet's channel statistics (timm.data's IMAGENET_DEFAULT_MEAN/STD, written out so that reading
#: a checkpoint's meta never imports timm; tests/test_input_spec.py holds them equal): checkpoints
#: from before mean/std were recorded were trained with them.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Resampling of checkpoints from before interpolation was recorded.
DEFAULT_INTERPOLATION = "bilinear"
INTERPOLATIONS = ("bilinear", "bicubic")

#: InputSpec field -> its key in a checkpoint's meta (the JSON keys checkpoints have always had).
META_KEYS = {"size": "input_size", "mpp": "mpp", "mean": "mean", "std": "std", "interpolation": "interpolation",
             "stain_norm": "stain_norm"}


@dataclass(frozen=True)
class InputSpec:
    """How a tile becomes model input.

    Args:
        size: side of the square input in pixels.
        mpp: µm per pixel of that input (the resolution tiles are read at).
        mean, std: per-channel normalisation of 0-1 RGB values.
        interpolation: resampling of tiles to `size`, "bilinear" or "bicubic".
        stain_norm: the fitted stain reference applied to every tile first
            (`MacenkoNormalizer.state()`: {"method": "macenko", ...}), or None for none.
    """

    size: int
    mpp: float = DEFAULT_MPP
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = DEFAULT_INTERPOLATION
    # A dict cannot be hashed; the spec is compared, never used as a key.
    stain_norm: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        # Plain floats and tuples whatever came in (lists from JSON, numpy or torch numbers).
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mpp", float(self.mpp))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "interpolation", str(self.interpolation))
        object.__setattr__(self, "stain_norm", copy.deepcopy(dict(self.stain_norm)) if self.stain_norm else None)
        if self.size <= 0 or not self.mpp > 0:
            raise ValueError(f"input size and µm/px must be positive, got {self.size} px at {self.mpp} µm/px")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(v > 0 for v in self.std):
            raise ValueError(f"mean and std need 3 values each, std positive; got {self.mean} and {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be {' or '.join(INTERPOLATIONS)}, got {self.interpolation!r}")

    @classmethod
    def from_model(cls, model, mpp: float = DEFAULT_MPP, stain_norm: Mapping[str, Any] | None = None, *,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   interpolation: str | None = None) -> "InputSpec":
        """The spec of `model` (a `MultiLabelClassifier`): its input size, and its backbone's
        mean/std/interpolation from timm's pretrained config unless given."""
        data = model.data_config()
        return cls(size=data["input_size"], mpp=mpp, mean=data["mean"] if mean is None else mean,
                   std=data["std"] if std is None else std,
                   interpolation=interpolation or data["interpolation"], stain_norm=stain_norm)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "InputSpec":
        """The spec a checkpoint's meta records (its JSON keys, `META_KEYS`); absent keys: the defaults
        of checkpoints written before they were recorded."""
        return cls(**{name: meta[key] for name, key in META_KEYS.items() if key in meta})

    def to_meta(self) -> dict[str, Any]:
        """The checkpoint meta's entries, under its JSON keys, as plain lists and numbers."""
        values = {"size": self.size, "mpp": self.mpp, "mean": list(self.mean), "std": list(self.std),
                  "interpolation": self.interpolation, "stain_norm": copy.deepcopy(self.stain_norm)}
        return {META_KEYS[name]: value for name, value in values.items()}
