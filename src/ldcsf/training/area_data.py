"""Training items with area targets: images (full training) or cached backbone features (frozen backbone).

Both give batches {"target" (L,), "area" (L, h, w), "index"} plus either "image" or "features";
"area" is NaN wherever no mask annotates a label (every cell of a tile without a mask).

Frozen-backbone training computes the backbone once per image and view and keeps the maps on
disk (`FeatureCache`): a view is one fixed draw of the training augmentation (view 0 is the
plain, un-augmented tile), so stain and scale augmentation still reach the head while the
backbone, the expensive part on a CPU, runs once per view instead of once per epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from ..utils.progress import tqdm  # bars in a terminal, lines in a log

from ..data.area_targets import PairedTransform, cell_fractions
from ..data.dataset import load_rgb
from ..data.manifest import Manifest
from ..data.masks import WSSS4LUAD, MaskScheme, read_mask
from ..utils.atomic import atomic_path

log = logging.getLogger(__name__)


def feature_grid(model, input_size: int) -> tuple[int, int]:
    """(h, w) of the model's feature map for an input of `input_size` px."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        shape = model.forward_features(torch.zeros(1, 3, input_size, input_size)).shape[-2:]
    model.train(was_training)
    return int(shape[0]), int(shape[1])


def mask_paths(manifest: Manifest) -> list[Path | None]:
    """Each row's mask file (the manifest's optional `mask` column), None where it has none."""
    if "mask" not in manifest.frame.columns:
        return [None] * len(manifest)
    root = manifest.root
    out = []
    for value in manifest.frame["mask"]:
        if not isinstance(value, str) or not value.strip():
            out.append(None)
        else:
            path = Path(value)
            out.append(path if path.is_absolute() else root / path)
    return out


class AreaImageDataset(Dataset):
    """Images, presence targets and per-cell area targets from the rows' masks."""

    def __init__(self, manifest: Manifest, transform: PairedTransform, grid: tuple[int, int],
                 scheme: MaskScheme = WSSS4LUAD):
        self.paths = manifest.image_paths()
        self.masks = mask_paths(manifest)
        self.targets = torch.from_numpy(manifest.targets())
        self.labels = list(manifest.labels)
        self.transform, self.grid, self.scheme = transform, grid, scheme

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, area = item_with_area(self.paths[index], self.masks[index], self.transform, self.grid,
                                     self.labels, self.scheme)
        return {"image": image, "target": self.targets[index].clone(), "area": area, "index": index}


def item_with_area(path: Path, mask_path: Path | None, transform: PairedTransform, grid: tuple[int, int],
                   labels: Sequence[str], scheme: MaskScheme) -> tuple[torch.Tensor, torch.Tensor]:
    """(image tensor, (L, h, w) area target) of one tile, its mask moved with the image."""
    mask = read_mask(mask_path) if mask_path is not None else None
    image, moved = transform(load_rgb(path), mask)
    if moved is None:
        return image, torch.full((len(labels), *grid), float("nan"))
    try:
        return image, cell_fractions(moved, grid, labels, scheme)
    except ValueError as err:
        raise ValueError(f"{mask_path}: {err}") from None


# -- frozen backbone: cached feature maps ------------------------------------------------------------
class FeatureCache:
    """Backbone maps (float16) and area targets per image and view, one file per image.

    The key holds everything the maps depend on (backbone weights digest, input size,
    normalisation, augmentation, labels), so a cache is shared by runs that agree on those,
    e.g. the folds of a cross-validation, and never mixes maps of different backbones.
    """

    def __init__(self, directory: str | Path, model, input_size: int, mean: Sequence[float], std: Sequence[float],
                 labels: Sequence[str], scheme: MaskScheme = WSSS4LUAD, scale: tuple[float, float] = (0.6, 1.0),
                 hed_jitter: float = 0.05, interpolation: str = "bilinear", stain_normalizer=None):
        self.model, self.input_size, self.labels, self.scheme = model, int(input_size), list(labels), scheme
        self.grid = feature_grid(model, input_size)
        common = dict(interpolation=interpolation, stain_normalizer=stain_normalizer)
        self.plain = PairedTransform(input_size, mean, std, train=False, **common)
        self.augment = PairedTransform(input_size, mean, std, train=True, scale=scale, hed_jitter=hed_jitter, **common)
        settings = {"backbone": weights_digest(model.backbone_module()), "input": self.input_size,
                    "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
                    "labels": self.labels, "scale": list(scale), "hed": hed_jitter, "scheme": str(scheme.classes),
                    "interpolation": interpolation,
                    "stain": getattr(stain_normalizer, "state", lambda: None)() if stain_normalizer else None}
        depths = getattr(model.backbone_module(), "map_depths", None)
        if depths:  # maps of several depths side by side: the same weights give other maps
            settings["depths"] = list(depths)
        measures = getattr(model.backbone_module(), "measure_names", None)
        if measures:  # stain measures after the maps (their names carry the thresholds)
            settings["stain_measures"] = list(measures)
        stain_view = getattr(model, "macenko", None)
        if stain_view is not None:  # maps of every view stacked: not those of a plain model
            settings["views"] = {"order": list(model.view_order), "macenko": stain_view.reference()}
        key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(directory) / key
        self.directory.mkdir(parents=True, exist_ok=True)

    def _file(self, path: Path) -> Path:
        return self.directory / (hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest() + ".pt")

    def cached(self, path: Path, views: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(views, C, h, w) float16 maps and (views, L, h, w) area targets, when on disk."""
        file = self._file(path)
        if file.is_file():
            cached = torch.load(file, map_location="cpu", weights_only=True)
            if cached["features"].shape[0] >= views:
                return cached["features"][:views], cached["area"][:views]
        return None

    def compute(self, rows: list[tuple[Path, Path | None]], views: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the backbone on every view of `rows` in one batch; save each image's maps."""
        images, areas = [], []
        with torch.random.fork_rng():  # the training's own random stream stays untouched
            for path, mask in rows:
                for view in range(views):
                    # Each view is one fixed, reproducible draw of the augmentation.
                    torch.manual_seed(int(hashlib.sha1(f"{path}:{view}".encode()).hexdigest()[:8], 16))
                    transform = self.plain if view == 0 else self.augment
                    image, area = item_with_area(path, mask, transform, self.grid, self.labels, self.scheme)
                    images.append(image)
                    areas.append(area)
        backbone = self.model.backbone_module()
        with torch.inference_mode():
            # channels-last: measured 3-5x faster for EfficientNet's depthwise convolutions on a CPU.
            backbone.to(memory_format=torch.channels_last)
            batch = torch.stack(images).contiguous(memory_format=torch.channels_last)
            features = self.model.forward_backbone(batch).to(torch.float16).contiguous()
            backbone.to(memory_format=torch.contiguous_format)
        out = []
        for i, (path, _) in enumerate(rows):
            payload = {"features": features[i * views:(i + 1) * views].clone(),
                       "area": torch.stack(areas[i * views:(i + 1) * views])}
            with atomic_path(self._file(path)) as tmp:
                torch.save(payload, tmp)
            out.append((payload["features"], payload["area"]))
        return out

    def load(self, manifest: Manifest, views: int, progress: bool = True, what: str = "",
             batch_images: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, views, C, h, w) maps and (N, views, L, h, w) area targets of a manifest's rows."""
        # Leaves the whole model in eval mode, and so the heads of a frozen-backbone fit (this runs
        # inside it): kept, as training-mode heads scored worse on held-out sources (GlaS MAE,
        # WSSS4LUAD Spearman; docs/results.md, "Heads trained in training mode").
        self.model.eval()
        rows = list(zip(manifest.image_paths(), mask_paths(manifest)))
        found: list = [self.cached(path, views) for path, _ in rows]
        missing = [i for i, item in enumerate(found) if item is None]
        with tqdm(total=len(missing), desc=f"backbone features {what}".strip(), unit="img",
                  disable=not progress or not missing) as bar:
            for start in range(0, len(missing), batch_images):
                chunk = missing[start:start + batch_images]
                for i, item in zip(chunk, self.compute([rows[i] for i in chunk], views)):
                    found[i] = item
                bar.update(len(chunk))
        return torch.stack([f for f, _ in found]), torch.stack([a for _, a in found])


def weights_digest(module: torch.nn.Module) -> str:
    """A short digest of a module's weights (what its features depend on)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
        digest.update(str(float(tensor.float().sum())).encode())
    return digest.hexdigest()[:16]


class CachedFeatureDataset(Dataset):
    """Items of cached maps: in training a random view per visit, else view 0 (the plain tile)."""

    def __init__(self, features: torch.Tensor, areas: torch.Tensor, targets: torch.Tensor, train: bool):
        self.features, self.areas, self.targets, self.train = features, areas, targets, train

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = int(torch.randint(0, self.features.shape[1], ()).item()) if self.train else 0
        return {"features": self.features[index, view].float(), "area": self.areas[index, view],
                "target": self.targets[index].clone(), "index": index}


class CachedFeatureDataModule(L.LightningDataModule):
    """Train/val/test loaders over cached backbone maps (see `FeatureCache`)."""

    def __init__(self, splits: dict[str, Manifest], cache: FeatureCache, views: int, batch_size: int = 32,
                 progress: bool = True, member_orders: int = 1, seed: int = 0):
        super().__init__()
        self.splits, self.cache, self.views = splits, cache, int(views)
        self.batch_size, self.progress = int(batch_size), progress
        self.member_orders, self.seed = int(member_orders), int(seed)
        self.labels = list(splits["train"].labels)
        self._data: dict[str, CachedFeatureDataset] = {}

    def train_targets(self) -> torch.Tensor:
        return torch.from_numpy(self.splits["train"].targets())

    def split_sizes(self) -> dict[str, int]:
        return {name: len(m) for name, m in self.splits.items()}

    def dataset(self, split: str) -> CachedFeatureDataset:
        if split not in self._data:
            views = self.views if split == "train" else 1
            features, areas = self.cache.load(self.splits[split], views, progress=self.progress, what=split)
            targets = torch.from_numpy(self.splits[split].targets())
            self._data[split] = CachedFeatureDataset(features, areas, targets, train=split == "train")
        return self._data[split]

    def _loader(self, split: str, shuffle: bool = False, generator: torch.Generator | None = None) -> DataLoader:
        # In memory already: worker processes would only copy the maps.
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=shuffle, num_workers=0,
                          generator=generator)

    def train_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.member_orders == 1:
            return self._loader("train", shuffle=True)
        # An ensemble's heads each walk the training set in their own order (Lightning zips the
        # loaders, one batch per head per step): heads that saw the same batches made the same
        # mistakes on unseen sources, separately shuffled runs averaged better (docs/results.md).
        # Under DDP Lightning swaps in its own seeded sampler, the same for every head. Seeds spaced
        # by run (seed * 1009 + k), so one run's head k does not repeat another run's head 0.
        return [self._loader("train", shuffle=True, generator=torch.Generator().manual_seed(self.seed * 1009 + k))
                for k in range(self.member_orders)]

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
