"""Manifest -> train/val/test loaders (a LightningDataModule).

The splits come from the manifest's `split` column; without one, images are split here (by
`group`, e.g. patient, when present so a patient never spans two splits; else by image), seeded.
Every image is decoded once up front: unreadable ones are dropped with a logged count and their
names written to `bad_images.log` in the run folder, or stop the run when `strict`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.dataset import IndexedDataset, ManifestDataset, drop_unreadable_images
from ..data.manifest import Manifest
from ..data.transforms import build_transforms, stain_normalizer_from
from ..models.input_spec import InputSpec
from ..options import SPLIT_FRACTIONS
from .sampling import balanced_sampler

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = SPLIT_FRACTIONS


def split_manifest(manifest: Manifest, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, Manifest]:
    """{"train", "val", "test"} manifests, from the `split` column or assigned here."""
    if "split" not in manifest.frame.columns or manifest.frame["split"].isna().all():
        from ..data.splits import assign_splits

        frame = assign_splits(manifest.frame, fractions=tuple(fractions), group_col="group", seed=seed)
        manifest = Manifest(frame=frame, root=manifest.root, labels=list(manifest.labels), source=manifest.source)
    unknown = sorted(set(manifest.frame["split"].dropna()) - set(SPLITS))
    if unknown:
        raise ValueError(f"{manifest.source or manifest.root}: unknown split name(s) {unknown} (use {', '.join(SPLITS)})")
    return {name: manifest.subset(name) for name in SPLITS}


class ManifestDataModule(L.LightningDataModule):
    """Loaders over the train/val/test splits of a manifest.

    Args:
        splits: {"train", "val", "test"} manifests (see `split_manifest`).
        input_spec: the model's input (size, normalisation, resampling, stain reference applied to
            every image first), as the checkpoint will record it.
        balanced: draw training images with `balanced_sampler` instead of shuffling.
    """

    def __init__(self, splits: dict[str, Manifest], input_spec: InputSpec, batch_size: int = 32, num_workers: int = 4,
                 balanced: bool = False, seed: int = 0, hed_jitter: float = 0.05,
                 crop_scale: Sequence[float] = (0.6, 1.0)):
        super().__init__()
        self.splits = splits
        self.input_spec = input_spec
        self.input_size, self.mean, self.std = input_spec.size, list(input_spec.mean), list(input_spec.std)
        self.interpolation = input_spec.interpolation
        self.stain_normalizer = stain_normalizer_from(input_spec.stain_norm)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.balanced, self.seed = balanced, seed
        #: training augmentation: stain (HED jitter strength) and scale (random crop's area share)
        self.hed_jitter, self.crop_scale = float(hed_jitter), (float(crop_scale[0]), float(crop_scale[1]))
        self.labels = list(splits["train"].labels)
        #: (h, w) of the model's map when it has an area head: items then carry per-cell area targets.
        self.area_grid: tuple[int, int] | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest, run_dir: Path | None = None, strict: bool = False, seed: int = 0,
                      fractions: Sequence[float] = DEFAULT_FRACTIONS, progress: bool = True, **kwargs) -> "ManifestDataModule":
        """Check images, split, and require non-empty train and val splits."""
        manifest = drop_unreadable_images(manifest, run_dir, strict=strict, progress=progress)
        splits = split_manifest(manifest, seed=seed, fractions=fractions)
        for name in ("train", "val"):
            if len(splits[name]) == 0:
                raise ValueError(f"{manifest.source or manifest.root}: no readable images in the {name!r} split")
        return cls(splits, seed=seed, **kwargs)

    def train_targets(self) -> torch.Tensor:
        return torch.from_numpy(self.splits["train"].targets())

    def split_sizes(self) -> dict[str, int]:
        return {name: len(m) for name, m in self.splits.items()}

    def dataset(self, split: str, train: bool = False) -> Dataset:
        if self.area_grid is not None:
            from ..data.area_targets import PairedTransform
            from .area_data import AreaImageDataset

            paired = PairedTransform(self.input_size, self.mean, self.std, train=train, hed_jitter=self.hed_jitter,
                                     scale=self.crop_scale, interpolation=self.interpolation,
                                     stain_normalizer=self.stain_normalizer)
            return AreaImageDataset(self.splits[split], paired, self.area_grid)
        transform = build_transforms(self.input_size, self.mean, self.std, train=train, hed_jitter=self.hed_jitter,
                                     scale=self.crop_scale, interpolation=self.interpolation,
                                     stain_normalizer=self.stain_normalizer)
        return IndexedDataset(ManifestDataset(self.splits[split], transform=transform))

    def _loader(self, dataset: Dataset, shuffle: bool = False, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train", train=True)
        if self.balanced:
            return self._loader(dataset, sampler=balanced_sampler(self.splits["train"].targets(), seed=self.seed))
        return self._loader(dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"))
