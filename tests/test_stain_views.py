"""Heads on two stain views in one checkpoint: the batched Macenko view inside the model, an ensemble
whose members read the plain or the normalised maps, trained, exported and run on a real slide.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.data.transforms import MacenkoNormalizer
from ldcsf.models.ensemble import ensemble_size
from ldcsf.models.macenko import REFERENCE_MAX_CONCENTRATIONS, REFERENCE_STAINS, MacenkoView, macenko_normalize
from ldcsf.training import train
from ldcsf.wholeslide.pipeline import run_slide
from test_training_ensemble import CMU, SLIDE, config, small_manifest

#: Real tiles of five sources, organs and labs.
SOURCES = ("nct_crc", "oral", "osteosarcoma", "wsss4luad", "lc25000")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def real_tiles(shared_data, size: int, per_source: int = 3) -> np.ndarray:
    manifest = pd.read_csv(shared_data / "manifest.csv", dtype=str)
    tiles = []
    for source in SOURCES:
        paths = sorted(p for p in manifest["path"] if p.startswith(source + "/"))[:per_source]
        assert paths, f"no {source} tiles in the shared manifest"
        tiles += [np.asarray(Image.open(shared_data / p).convert("RGB").resize((size, size))) for p in paths]
    return np.stack(tiles)


def model_input(tiles: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def test_the_batched_macenko_is_torchstains_on_real_tiles(shared_data):
    tiles = real_tiles(shared_data, 128)
    blank = np.full((1, 128, 128, 3), 246, np.uint8)  # glass: no stain to estimate
    batch = np.concatenate([tiles, blank])
    ours = macenko_normalize(torch.from_numpy(batch).permute(0, 3, 1, 2).float(), torch.tensor(REFERENCE_STAINS),
                             torch.tensor(REFERENCE_MAX_CONCENTRATIONS)).permute(0, 2, 3, 1).numpy()
    reference = MacenkoNormalizer()
    for tile, got in zip(batch, ours):
        want = reference.normalize_array(tile).astype(np.float32)
        assert np.abs(got - want).max() <= 1  # a float's last digits decide a level now and then
        assert (got != want).mean() < 0.01
        assert not np.array_equal(want, tile) or np.array_equal(got, tile)
    assert np.array_equal(ours[-1], blank[0]) and not np.array_equal(ours[0], tiles[0])


def test_the_view_undoes_and_redoes_the_models_normalisation(shared_data):
    tiles = real_tiles(shared_data, 64, per_source=1)
    view = MacenkoView(MEAN, STD)
    normed = macenko_normalize(torch.from_numpy(tiles).permute(0, 3, 1, 2).float(), view.stains,
                               view.max_concentrations, whole_levels=False)
    with torch.inference_mode():
        got = view(model_input(tiles))
    assert torch.allclose(got, model_input(normed.permute(0, 2, 3, 1).numpy() / 1.0), atol=1e-4)
    torchstains = MacenkoNormalizer().state()  # the view's default reference is torchstain's
    assert np.allclose(view.reference()["stain_matrix"], torchstains["stain_matrix"])
    assert np.allclose(view.reference()["max_concentrations"], torchstains["max_concentrations"])


def two_view_model(**kwargs):
    torch.manual_seed(0)
    return create_model("ldcsf_swin_micro", area_head=True, ensemble=4, ensemble_seeds=[0, 1, 0, 1],
                        ensemble_views=["plain", "plain", "macenko", "macenko"], **kwargs)


def test_each_member_reads_its_own_views_map(shared_data):
    model = two_view_model().eval()
    x = model_input(real_tiles(shared_data, 64, per_source=1))
    with torch.inference_mode():
        logits, areas = model.forward_members(x)
        plain = model.backbone.forward_features(x)
        normed = model.backbone.forward_features(model.macenko(x))
        from ldcsf.models.backbones import feature_map

        maps = {"plain": feature_map(model.backbone, plain), "macenko": feature_map(model.backbone, normed)}
        for k, (member, view) in enumerate(zip(model.members, model.views)):
            neck = member.forward_neck(maps[view])
            assert torch.allclose(logits[k], member.forward_head(neck), atol=1e-5), (k, view)
            assert torch.allclose(areas[k], member.area_logits(neck), atol=1e-5), (k, view)
        assert torch.allclose(model(x), logits.mean(0), atol=1e-5)
    # Members 0 and 2 start from the same seed: only the view tells them apart.
    assert torch.equal(model.members[0].head.weight, model.members[2].head.weight)
    assert not torch.allclose(logits[0], logits[2])


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_two_view_ensemble_exports_with_its_macenko_view(shared_data, tmp_path, runtime):
    pytest.importorskip("onnxruntime" if runtime == "onnx" else "openvino", reason=f"the runtimes extra ({runtime})")
    from ldcsf.inference.exported import EXPORT_TOLERANCE
    from ldcsf.inference.runtimes import runtime_model

    model = two_view_model()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "views.pt", model, CheckpointMeta.for_model(model, mpp=1.25)))
    assert loaded.meta.model_kwargs["ensemble_views"] == ["plain", "plain", "macenko", "macenko"]
    engine = runtime_model(loaded, runtime, threads=1)
    assert engine.ensemble_size == 4
    x = model_input(real_tiles(shared_data, 64, per_source=1))
    with torch.inference_mode():
        want = loaded.model.forward_members(x)
    for w, g in zip(want, engine.forward_members(x)):
        assert g.shape == w.shape
        assert float((torch.sigmoid(g) - torch.sigmoid(w)).abs().max()) <= EXPORT_TOLERANCE


@pytest.fixture(scope="module")
def two_view_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("views")
    manifest = small_manifest(shared_data, tmp / "manifest.csv")
    cache = tmp / "cache"
    # One epoch each, so that both keep the same (last) epoch's heads.
    plain = train(config(manifest, tmp / "plain", ensemble=2, feature_cache=str(cache), epochs=1))
    views = train(config(manifest, tmp / "views", ensemble=2, ensemble_views=["plain", "macenko"],
                         feature_cache=str(cache), epochs=1))
    return manifest, cache, plain, views


def test_training_on_two_views_keeps_k_heads_per_view_in_one_checkpoint(two_view_run):
    manifest, cache, plain, views = two_view_run
    loaded = load_checkpoint(views.model_file)
    model = loaded.model
    assert ensemble_size(model) == 4 and model.views == ["plain", "plain", "macenko", "macenko"]
    assert loaded.meta.model_kwargs["ensemble_seeds"] == [0, 1, 0, 1]
    assert loaded.meta.input_spec.stain_norm is None  # the input is the plain tile; the model makes the other view
    # The plain heads' maps are not those of the plain run's cache: two keys, two folders.
    assert len([d for d in cache.iterdir() if d.is_dir()]) == 2
    # Same-seed heads start equal; trained on their own view's maps, they end apart.
    state = model.state_dict()
    assert not torch.equal(state["members.0.head.weight"], state["members.2.head.weight"])
    # The plain heads walked the same maps in the same orders as the plain run's heads and end where
    # they did; the Macenko heads, from the same seeds, read other maps and end elsewhere.
    baseline = load_checkpoint(plain.model_file).model.state_dict()
    for k in range(2):
        plain_gap = (state[f"members.{k}.head.weight"] - baseline[f"members.{k}.head.weight"]).abs().mean()
        view_gap = (state[f"members.{k + 2}.head.weight"] - baseline[f"members.{k}.head.weight"]).abs().mean()
        assert plain_gap < view_gap / 20, (k, float(plain_gap), float(view_gap))
    assert views.thresholds != [0.5] * 4


def test_a_slide_on_two_views_carries_every_heads_spread(two_view_run, shared_data, tmp_path):
    _, _, _, views = two_view_run
    run_slide(shared_data / CMU, views.model_file, tmp_path / "out", SLIDE)
    tsr = json.loads((tmp_path / "out" / "tsr.json").read_text())["tsr"]
    assert tsr["interval_method"].endswith("widened by the spread of 4 ensemble members")
    assert len(tsr["member_stroma_fractions"]) == 4


def test_views_are_refused_where_they_cannot_work(shared_data, tmp_path):
    manifest = small_manifest(shared_data, tmp_path / "manifest.csv")
    with pytest.raises(ValueError, match=r"^--ensemble-views takes plain and/or macenko, each once; got plain he$"):
        train(config(manifest, tmp_path / "a", ensemble_views=["plain", "he"]))
    with pytest.raises(ValueError, match="normalises inside the model: leave out --stain-norm"):
        train(config(manifest, tmp_path / "b", ensemble_views=["plain", "macenko"], stain_norm="macenko"))
    with pytest.raises(ValueError, match=r"^--ensemble 1 --ensemble-views plain macenko trains heads on one frozen "
                                         r"backbone: add --freeze-backbone$"):
        train(config(manifest, tmp_path / "c", ensemble_views=["plain", "macenko"], freeze_backbone=False))
    assert not any((tmp_path / name).exists() for name in "abc")
    with pytest.raises(ValueError, match="ensemble_views names a view per member"):
        create_model("ldcsf_swin_micro", ensemble_views=["macenko"])
    with pytest.raises(ValueError, match="ensemble views must name one of plain, macenko per member"):
        create_model("ldcsf_swin_micro", ensemble=2, ensemble_views=["plain"])


def test_the_view_keeps_float32_under_autocast(shared_data):
    """A model run in bfloat16 autocast (as `--precision bf16-mixed` does) normalises as in float32."""
    view = MacenkoView(MEAN, STD)
    x = model_input(real_tiles(shared_data, 64, per_source=1))
    with torch.inference_mode():
        want = view(x)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            got = view(x)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-5)
