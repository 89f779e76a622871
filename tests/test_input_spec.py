"""The model's input described once (`InputSpec`): the same from training to checkpoint to prediction.

Checkpoints keep the meta keys they always had: one written before the spec existed, the shipped
model, and one from a real (short) training run all load to the spec that made them.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.checkpoint import WEIGHTS_DIGEST_KEY, CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.checkpoint_safety import weights_digest
from ldcsf.data.transforms import MacenkoNormalizer, eval_transforms
from ldcsf.models.input_spec import InputSpec
from ldcsf.training.datamodule import ManifestDataModule, split_manifest
from ldcsf.training.module import META_KEY
from ldcsf.training.train import effective_mpp, input_spec_for
from test_training_run import config, make_manifest

#: The meta `save_checkpoint` wrote for `ldcsf_swin_micro` at 1.25 µm/px with a Macenko reference
#: fitted to nct_crc/ADI-AAQEFMRI.tif, by the code before InputSpec (captured from that code).
OLD_META = json.loads("""
{"model_name": "ldcsf_swin_micro", "model_kwargs": {"labels": ["stroma", "necrosis", "non_tumor", "tumor"]},
 "labels": ["stroma", "necrosis", "non_tumor", "tumor"], "thresholds": [0.5, 0.5, 0.5, 0.5], "input_size": 64,
 "mpp": 1.25, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bicubic",
 "stain_norm": {"method": "macenko", "stain_matrix": [[0.5685313940048218, 0.27998238801956177],
   [0.7210323810577393, 0.8003138303756714], [0.3960859477519989, 0.5301955342292786]],
   "max_concentrations": [0.8085025548934937, 0.6714187264442444]},
 "code_version": "0.1.0", "extra": {}}
""")
SPEC_KEYS = ("input_size", "mpp", "mean", "std", "interpolation", "stain_norm")
REFERENCE = "nct_crc/ADI-AAQEFMRI.tif"


def test_a_checkpoint_written_before_the_spec_loads_to_its_spec_and_is_written_back_the_same(tmp_path, shared_data):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    old_file = tmp_path / "old.pt"
    torch.save({"format": "ldcsf-checkpoint", "format_version": 1, "meta": OLD_META, "state_dict": state,
                WEIGHTS_DIGEST_KEY: weights_digest(state)}, old_file)
    spec = load_checkpoint(old_file).meta.input_spec
    assert spec == InputSpec(size=64, mpp=1.25, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             interpolation="bicubic", stain_norm=OLD_META["stain_norm"])
    # Made afresh from the model and the same reference, it is the same spec, and the same meta keys.
    # (the fit is an eigen-decomposition: another numpy/LAPACK build moves its last digits, ~1e-6)
    fitted = MacenkoNormalizer(shared_data / REFERENCE).state()
    for key in ("stain_matrix", "max_concentrations"):
        np.testing.assert_allclose(fitted[key], OLD_META["stain_norm"][key], rtol=0, atol=1e-5)
    assert InputSpec.from_model(model, mpp=1.25, stain_norm=OLD_META["stain_norm"]) == spec
    new_meta = CheckpointMeta.for_model(model, input_spec=spec).to_dict()
    # Every key it had, with the same value (entries added since have their own defaults).
    assert {k: new_meta[k] for k in OLD_META if k != "code_version"} == {
        k: v for k, v in OLD_META.items() if k != "code_version"}
    assert load_checkpoint(save_checkpoint(tmp_path / "new.pt", model, CheckpointMeta.for_model(
        model, input_spec=spec))).meta.input_spec == spec


def test_the_shipped_model_loads_to_the_spec_its_card_records():
    from ldcsf.shipped import load_shipped, read_card

    card_meta = read_card()["meta"]
    loaded = load_shipped()
    spec = loaded.meta.input_spec
    assert spec.to_meta() == {key: card_meta[key] for key in SPEC_KEYS}
    assert spec.size == loaded.model.img_size[0] and spec.mean == tuple(card_meta["mean"])
    # Written again by this code, the shipped model's meta keeps every input entry as it was.
    rewritten = CheckpointMeta.for_model(loaded.model, thresholds=loaded.meta.thresholds, input_spec=spec).to_dict()
    assert {key: rewritten[key] for key in SPEC_KEYS} == {key: card_meta[key] for key in SPEC_KEYS}


def test_a_spec_refuses_what_no_model_can_take():
    with pytest.raises(ValueError, match="interpolation must be bilinear or bicubic"):
        InputSpec(size=64, interpolation="nearest")
    with pytest.raises(ValueError, match="must be positive"):
        InputSpec(size=64, mpp=0)
    with pytest.raises(ValueError, match="input spec of 96 px for a model that takes 64 px"):
        CheckpointMeta.for_model(create_model("ldcsf_swin_micro"), input_spec=InputSpec(size=96))
    spec = InputSpec(size=64, stain_norm=OLD_META["stain_norm"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.mpp = 1.0  # type: ignore[misc]
    assert InputSpec.from_meta({"input_size": 64}) == InputSpec(size=64)  # a checkpoint older than its entries


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """A one-epoch run with tile µm/px and a Macenko reference given: every input option set."""
    from ldcsf.training import train

    tmp = tmp_path_factory.mktemp("spec_run")
    manifest = make_manifest(shared_data, tmp / "manifest.csv")
    cfg = config(manifest, tmp / "run", epochs=1, tile_mpp=0.5, stain_norm="macenko",
                 stain_reference=str(shared_data / REFERENCE))
    return cfg, train(cfg)


def test_a_training_run_records_the_spec_it_was_made_with(trained, shared_data):
    cfg, result = trained
    model = create_model("ldcsf_swin_micro")
    nct_tile_px = Image.open(shared_data / REFERENCE).size[0]
    want = InputSpec.from_model(model, mpp=effective_mpp(64, tile_mpp=0.5, tile_px=nct_tile_px),
                                stain_norm=MacenkoNormalizer(shared_data / REFERENCE).state())
    assert want.mpp == pytest.approx(0.5 * nct_tile_px / 64)
    assert load_checkpoint(result.model_file).meta.input_spec == want
    assert load_checkpoint(result.best_checkpoint).meta.input_spec == want
    lightning = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert InputSpec.from_meta(lightning[META_KEY]) == want
    assert InputSpec.from_meta(lightning["hyper_parameters"] | {"input_size": 64}) == want
    run_config = json.loads((result.run_dir / "config.json").read_text())
    assert (run_config["input_size"], run_config["mpp"]) == (want.size, want.mpp)


def test_the_data_module_prepares_images_as_the_checkpoint_says_prediction_will(trained):
    cfg, result = trained
    spec = load_checkpoint(result.model_file).meta.input_spec
    from ldcsf.data.manifest import read_manifest

    manifest = read_manifest(cfg.data)
    assert input_spec_for(cfg, create_model("ldcsf_swin_micro", labels=manifest.labels), manifest) == spec
    data = ManifestDataModule(split_manifest(manifest), spec, batch_size=4, num_workers=0)
    assert data.input_spec is spec
    val, unstained = data.dataset("val"), eval_transforms(dataclasses.replace(spec, stain_norm=None))
    largest_stain_change = 0.0
    for i, path in enumerate(data.splits["val"].image_paths()[:6]):
        with Image.open(path) as image:
            want, plain = eval_transforms(spec)(image.convert("RGB")), unstained(image.convert("RGB"))
        assert val[i]["image"].shape == (3, 64, 64)
        torch.testing.assert_close(val[i]["image"], want)
        largest_stain_change = max(largest_stain_change, float((plain - want).abs().max()))
    assert largest_stain_change > 0.05  # the stain reference is part of it (blank tiles are left as they are)


def test_slide_tiles_and_the_predictor_follow_the_spec(shared_data):
    from ldcsf.inference.predictor import Predictor
    from ldcsf.wholeslide.tile_dataset import TileDataset

    spec = InputSpec(size=64, mpp=1.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bicubic",
                     stain_norm=OLD_META["stain_norm"])
    boxes = np.array([[800, 800, 256, 256]])
    slide = shared_data / "slides" / "CMU-1-Small-Region.svs"
    tiles = TileDataset.for_input(slide, boxes, [0], spec)
    assert (tiles.out_size, tiles.interpolation, tiles.mpp) == (64, "bicubic", None)
    normalised = tiles.read_tile(0)
    plain = TileDataset(slide, boxes, [0], 64, interpolation="bicubic").read_tile(0)
    assert normalised.shape == plain.shape == (64, 64, 3) and np.abs(normalised.astype(int) - plain).max() > 10
    assert TileDataset.for_input(slide, boxes, [0], spec, slide_mpp=0.6).mpp == 0.6  # the slide's scan override
    predictor = Predictor.for_input(torch.nn.Identity(), spec)
    x = predictor.normalise(torch.full((1, 64, 64, 3), 255, dtype=torch.uint8))
    torch.testing.assert_close(x, torch.full((1, 3, 64, 64), 2.0))  # (1 - 0.5) / 0.25


def test_imagenet_statistics_are_timms():
    # Written out in input_spec so that reading a meta never imports timm: they must stay timm's.
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from ldcsf.models.input_spec import IMAGENET_MEAN, IMAGENET_STD

    assert tuple(IMAGENET_MEAN) == tuple(IMAGENET_DEFAULT_MEAN)
    assert tuple(IMAGENET_STD) == tuple(IMAGENET_DEFAULT_STD)
