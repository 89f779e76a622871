"""Stain and scale augmentation as training options: they reach the tiles, are recorded, and bad
values are refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldcsf.cli.main import build_parser
from ldcsf.data.area_targets import PairedTransform
from ldcsf.data.transforms import HEDJitter, build_transforms
from ldcsf.training import TrainConfig, train
from test_training_run import config, make_manifest


def _steps(transform):
    return list(getattr(transform, "transforms", []))


def test_build_transforms_uses_the_scale_and_stain_strength_asked_for():
    steps = _steps(build_transforms(64, (0.5,) * 3, (0.5,) * 3, train=True, hed_jitter=0.15, scale=(0.3, 1.0)))
    crop = next(s for s in steps if type(s).__name__ == "RandomResizedCrop")
    hed = next(s for s in steps if isinstance(s, HEDJitter))
    assert tuple(crop.scale) == (0.3, 1.0) and hed.sigma == pytest.approx(0.15)
    assert not any(isinstance(s, HEDJitter) for s in _steps(build_transforms(64, (0.5,) * 3, (0.5,) * 3, train=True,
                                                                             hed_jitter=0.0)))


def test_stronger_hed_jitter_moves_the_stains_further(shared_data):
    # A real H&E tile: the mean absolute change of the pixels grows with the jitter's strength.
    path = sorted((shared_data / "nct_crc").rglob("*.tif"))[0]
    image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
    change = {}
    for sigma in (0.05, 0.15):
        torch.manual_seed(0)
        jitter = HEDJitter(sigma)
        change[sigma] = float(np.mean([(jitter(image) - image).abs().mean() for _ in range(20)]))
    assert change[0.15] > 1.5 * change[0.05] > 0


def test_paired_transform_crops_image_and_mask_at_the_asked_scale():
    paired = PairedTransform(32, (0.5,) * 3, (0.5,) * 3, train=True, hed_jitter=0.1, scale=(0.25, 0.25))
    crop = next(s for s in paired.geometric.transforms if type(s).__name__ == "RandomResizedCrop")
    assert tuple(crop.scale) == (0.25, 0.25)


def test_cli_reads_the_crop_scale_pair():
    args = build_parser().parse_args(["train", "--data", "m.csv", "--out", "run", "--crop-scale", "0.3", "1"])
    assert args.crop_scale == [0.3, 1.0]
    assert build_parser().parse_args(["train", "--data", "m.csv", "--out", "run"]).crop_scale == [0.6, 1.0]


@pytest.mark.parametrize("kwargs,message", [
    ({"hed_jitter": 1.5}, r"--hed-jitter must be in \[0, 1\), got 1.5"),
    ({"crop_scale": [0.8, 0.5]}, r"--crop-scale needs 0 < MIN <= MAX <= 1, got 0.8 0.5"),
    ({"crop_scale": [0.0, 1.0]}, r"--crop-scale needs 0 < MIN"),
])
def test_bad_augmentation_is_refused_before_the_run_folder_exists(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(data=str(tmp_path / "m.csv"), model="ldcsf_swin_micro", out=str(tmp_path / "run"), **kwargs))
    assert not (tmp_path / "run").exists()


def test_a_run_records_its_augmentation(shared_data, tmp_path):
    manifest = make_manifest(shared_data, tmp_path / "manifest.csv")
    result = train(config(manifest, tmp_path / "run", epochs=1, hed_jitter=0.2, crop_scale=[0.4, 0.9]))
    recorded = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert recorded["hed_jitter"] == 0.2 and recorded["crop_scale"] == [0.4, 0.9]
