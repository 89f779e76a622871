"""Area-aware learning on real WSSS4LUAD pixel masks: targets, loss, area head, training, slide outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.analysis.areas import add_area_columns, own_cell_maps, paint_subtile
from ldcsf.analysis.grid import TileGrid
from ldcsf.analysis.tile_table import default_weighting
from tile_grids import tile_table_from_grids
from ldcsf.analysis.tsr import compute_tsr
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.data.area_targets import PairedTransform, cell_fractions
from ldcsf.data.masks import WSSS4LUAD, read_mask, tile_masks
from ldcsf.training import TrainConfig, train
from ldcsf.training.area_loss import area_loss

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def wsss_pair(shared_data, name="00.png"):
    validation = shared_data / "wsss4luad" / "validation"
    return validation / "img" / name, validation / "mask" / name


def test_cell_fractions_of_a_real_mask_add_up(shared_data):
    _, mask_path = wsss_pair(shared_data)
    mask = read_mask(mask_path)[:224, :224]
    cells = cell_fractions(mask, (7, 7), LABELS)
    assert cells.shape == (4, 7, 7)
    assert torch.isnan(cells[LABELS.index("necrosis")]).all()  # WSSS4LUAD does not annotate necrosis
    for value, name in WSSS4LUAD.classes.items():
        label = WSSS4LUAD.label_of.get(name)
        if label is not None:  # 224 = 7 x 32: the mean over equal cells is the tile's own fraction
            assert cells[LABELS.index(label)].mean().item() == pytest.approx(float((mask == value).mean()), abs=1e-5)
    known = cells[[0, 2, 3]]
    assert (known >= 0).all() and (known.sum(0) <= 1 + 1e-6).all()


def test_paired_transform_moves_the_mask_with_the_image(shared_data):
    _, mask_path = wsss_pair(shared_data)
    mask = read_mask(mask_path)[:200, :200]
    coded = Image.fromarray((mask * 60).astype(np.uint8)).convert("RGB")  # the image is the mask, in grey
    transform = PairedTransform(96, [0, 0, 0], [1, 1, 1], train=True, hed_jitter=0.0, color_jitter=0.0)
    torch.manual_seed(3)
    agreements, misaligned = [], []
    for _ in range(8):
        image, moved = transform(coded, mask)
        decoded = torch.round(image[0] * 255 / 60).long()
        agreements.append((decoded == moved).float().mean().item())
        misaligned.append((decoded == torch.rot90(moved, 1)).float().mean().item())
    assert moved.shape == (96, 96) and moved.dtype == torch.int64
    # Only class borders differ (the image is resampled smoothly, the mask by nearest neighbour);
    # a mask left a quarter turn behind its image would agree on about a third of the pixels.
    assert min(agreements) > 0.85 and min(agreements) > 2 * max(misaligned)


def test_area_loss_ignores_unannotated_entries_and_scores_presence():
    logits = torch.zeros(2, 2, 3, 3)
    targets = torch.full((2, 2, 3, 3), float("nan"))
    targets[0, 0] = 1.0
    logits[1] = 1e6  # huge but unannotated in the area targets: must add nothing
    presence = torch.tensor([[1.0, float("nan")], [float("nan"), float("nan")]])
    loss = area_loss(logits, targets, presence)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(math.log(2), rel=1e-4)
    # Presence only: a tile marked absent whose strongest cell says "present" costs much.
    absent = torch.tensor([[0.0, float("nan")]])
    high = torch.zeros(1, 2, 3, 3)
    high[0, 0, 1, 1] = 8.0
    assert area_loss(high, None, absent).item() > 5 * area_loss(torch.zeros(1, 2, 3, 3), None, absent).item()


@pytest.mark.parametrize("kind", [True, "exclusive"])
def test_area_head_round_trips_through_a_checkpoint(tmp_path, kind):
    model = create_model("ldcsf_swin_micro", area_head=kind).eval()
    assert model.has_area_head and model.model_cfg["kwargs"]["area_head"] == kind
    x = torch.randn(2, 3, 64, 64)
    logits, areas = model.forward_with_areas(x)
    assert logits.shape == (2, 4) and areas.shape == (2, 4, 2, 2)
    assert torch.allclose(logits, model(x))  # the presence output is the model's usual output
    path = save_checkpoint(tmp_path / "m.pt", model, CheckpointMeta.for_model(model))
    loaded = load_checkpoint(path).model
    assert torch.allclose(loaded.forward_with_areas(x)[1], areas)
    assert not create_model("ldcsf_swin_micro").has_area_head


def test_an_exclusive_area_head_shares_each_cell_among_the_labels():
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head="exclusive").eval()
    assert model.area_head.out_channels == 5  # four labels and "none of them"
    with torch.no_grad():
        model.area_head.bias.copy_(torch.tensor([3.0, -2.0, 0.0, 3.0, 1.0]))
        features = model.forward_features(torch.randn(3, 3, 64, 64))
        shares = torch.sigmoid(model.area_logits(features))
        softmax = torch.softmax(model.area_head(features), dim=1)[:, :4]
    assert torch.allclose(shares, softmax, atol=1e-6)
    # Together the labels never claim more than the whole cell; independent sigmoids with these
    # biases would give stroma and tumour 0.95 each.
    assert float(shares.sum(1).max()) < 1.0
    # One class taking a cell outright stays a finite logit (the loss reads logits).
    with torch.no_grad():
        model.area_head.bias.copy_(torch.tensor([200.0, 0.0, 0.0, 0.0, 0.0]))
        assert torch.isfinite(model.area_logits(features)).all()


def test_an_unknown_area_head_kind_is_a_one_line_error():
    with pytest.raises(ValueError, match="area_head must be true, false or \"exclusive\", got 'softmax'"):
        create_model("ldcsf_swin_micro", area_head="softmax")


@pytest.fixture(scope="module")
def mask_manifest(shared_data, tmp_path_factory):
    """Mask tiles of six WSSS4LUAD images (train 4, val 1, test 1) plus a few presence-only NCT-CRC tiles."""
    tmp = tmp_path_factory.mktemp("areas")
    validation = shared_data / "wsss4luad" / "validation"
    images = tmp / "img"
    images.mkdir()
    for name in ["00", "01", "02", "03", "04", "05"]:
        (images / f"{name}.png").symlink_to(validation / "img" / f"{name}.png")
    frame = tile_masks(images, validation / "mask", tmp / "tiles", tile_size=112, stride=56, labels=LABELS,
                       progress=False)
    frame["split"] = frame["source_image"].map(lambda p: {"04": "val", "05": "test"}.get(p[-6:-4], "train"))
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    nct = source[source["path"].str.startswith("nct_crc/")].head(8)
    nct = nct.assign(path=[str(shared_data / p) for p in nct["path"]], split="train")[["path", *LABELS, "split"]]
    nct[LABELS] = nct[LABELS].replace("", np.nan).astype(float)
    manifest = tmp / "manifest.csv"
    pd.concat([frame[["path", "mask", *LABELS, "split"]], nct]).to_csv(manifest, index=False)
    return manifest


def area_config(manifest, out, **kwargs) -> TrainConfig:
    base = dict(data=str(manifest), model="ldcsf_swin_micro", model_kwargs={"area_head": True}, out=str(out),
                epochs=3, batch_size=16, lr=2e-3, warmup_epochs=0.2, patience=0, num_workers=0,
                accelerator="cpu", devices=1, progress=False)
    return TrainConfig(**{**base, **kwargs})


def epoch_area_loss(run_dir) -> pd.Series:
    logs = pd.read_csv(run_dir / "logs" / "metrics.csv")
    return logs["train/area_loss_epoch"].dropna().reset_index(drop=True)


def test_training_on_images_with_masks_learns_areas(mask_manifest, tmp_path):
    result = train(area_config(mask_manifest, tmp_path / "run"))
    losses = epoch_area_loss(result.run_dir)
    assert len(losses) == 3 and losses.iloc[-1] < losses.iloc[0]
    assert load_checkpoint(result.model_file).model.has_area_head


def test_frozen_backbone_trains_on_cached_views_and_reuses_them(mask_manifest, tmp_path):
    cache = tmp_path / "cache"
    first = train(area_config(mask_manifest, tmp_path / "a", freeze_backbone=True, feature_views=2, epochs=6,
                              feature_cache=str(cache)))
    files = sorted(cache.rglob("*.pt"))
    assert files and torch.load(files[0], weights_only=True)["features"].shape[0] in (1, 2)
    losses = epoch_area_loss(first.run_dir)
    assert losses.iloc[-1] < losses.iloc[0]
    # The backbone did not move: its weights are those of a fresh model with the same seed.
    trained = load_checkpoint(first.model_file).model
    torch.manual_seed(0)
    fresh = create_model("ldcsf_swin_micro", area_head=True)
    backbone = {k: v for k, v in trained.state_dict().items() if k.startswith(("swin.", "backbone."))}
    assert backbone and all(torch.equal(v, fresh.state_dict()[k]) for k, v in backbone.items())
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    train(area_config(mask_manifest, tmp_path / "b", freeze_backbone=True, feature_views=2, epochs=1,
                      feature_cache=str(cache)))
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes  # a second run reads, never recomputes


def test_an_exclusive_area_head_learns_the_masks_on_cached_views(mask_manifest, tmp_path):
    config = area_config(mask_manifest, tmp_path / "run", freeze_backbone=True, feature_views=2, epochs=6,
                         model_kwargs={"area_head": "exclusive"})
    result = train(config)
    losses = epoch_area_loss(result.run_dir)
    assert losses.iloc[-1] < losses.iloc[0]
    model = load_checkpoint(result.model_file).model.eval()
    assert model.area_exclusive and model.area_head.out_channels == model.num_labels + 1


def test_area_weighting_reads_area_columns():
    table = tile_table_from_grids({"stroma": np.array([[0.9, 0.9]]), "tumor": np.array([[0.9, 0.9]])},
                                  tile_size=100, mpp=1.0, tissue_fraction=np.array([[1.0, 0.5]]))
    assert default_weighting(table) == "probability"
    table["area_stroma"], table["area_tumor"] = [0.6, 0.1], [0.2, 0.3]
    assert default_weighting(table) == "estimated_area"
    tsr = compute_tsr(table, weighting="estimated_area")
    assert tsr.stroma_fraction == pytest.approx(0.7 / 1.2)
    assert compute_tsr(table).stroma_fraction == pytest.approx(0.5)  # probability weighting unchanged
    with pytest.raises(ValueError, match="area_stroma"):
        compute_tsr(table.drop(columns=["area_stroma"]), weighting="estimated_area")


def test_own_cell_maps_and_subtile_painting():
    maps = np.arange(2 * 1 * 4 * 4, dtype=float).reshape(2, 1, 4, 4)
    assert own_cell_maps(maps, tile_size=100, stride=100).shape == (2, 1, 4, 4)
    centre = own_cell_maps(maps, tile_size=100, stride=50)
    assert centre.shape == (2, 1, 2, 2) and centre[0, 0, 0, 0] == maps[0, 0, 1, 1]
    table = tile_table_from_grids({"stroma": np.array([[0.5, 0.5]])}, tile_size=100, mpp=1.0)
    table = add_area_columns(table, maps, ["stroma"])
    assert table["area_stroma"].tolist() == [maps[0].mean(), maps[1].mean()]
    canvas = paint_subtile(TileGrid.from_tiles(table), maps[:, 0])
    assert canvas.shape == (4, 8) and np.array_equal(canvas[:, 4:], maps[1, 0])


def test_slide_with_an_area_head_gets_areas_and_subtile_maps(shared_data, tmp_path):
    from ldcsf.wholeslide.pipeline import SlideSettings, run_slide
    from ldcsf.wsi.writer import write_pyramidal_tiff

    image, _ = wsss_pair(shared_data)
    slide = write_pyramidal_tiff(tmp_path / "wsss00.tiff", np.asarray(Image.open(image).convert("RGB")), mpp=1.0,
                                 tile_size=64, compression="deflate")
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True, img_size=128)  # 4 x 4 map per tile
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, CheckpointMeta.for_model(model, mpp=1.0))
    out = tmp_path / "out"
    run_slide(slide, checkpoint, out, SlideSettings(mpp=1.0, num_workers=0, accelerator="cpu", devices=1,
                                                   progress=False))
    tiles = pd.read_parquet(out / "tiles.parquet")
    assert all(f"area_{n}" in tiles for n in LABELS)
    assert tiles[[f"area_{n}" for n in LABELS]].stack().between(0, 1).all()
    result = json.loads((out / "tsr.json").read_text())
    assert result["tsr"]["weighting"] == "estimated_area"
    assert result["tsr"]["stroma_fraction"] == pytest.approx(compute_tsr(tiles, weighting="estimated_area").stroma_fraction)
    with np.load(out / "subtile_maps.npz") as saved:
        assert saved["maps"].shape == (len(tiles), 4, 4, 4)
        assert np.allclose(saved["maps"].astype(float).mean((-2, -1))[:, 0], tiles["area_stroma"], atol=2e-3)
    assert (out / "overlay.png").is_file() and (out / "heatmap_stroma.png").is_file()
