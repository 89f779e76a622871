"""Ensembles in one checkpoint: K heads trained on one frozen backbone's cached maps, their mean
predicted, their spread carried into a slide's TSR interval.

Two short runs on real H&E tiles (module fixture, one feature cache): K=3 and K=1 with the same
seed, the micro model at 64 px; then both on the CMU slide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf.analysis.uncertainty import stroma_fraction_interval
from ldcsf.checkpoint import load_checkpoint
from ldcsf.wholeslide.pipeline import run_slide
from ldcsf.models.ensemble import HeadEnsemble, ensemble_size
from ldcsf.options import SlideSettings
from ldcsf.training import TrainConfig, train

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]
PER_SOURCE = {"nct_crc": 20, "oral": 12, "osteosarcoma": 12}
CMU = "slides/CMU-1-Small-Region.svs"
SLIDE = SlideSettings(batch_size=32, num_workers=0, accelerator="cpu", devices=1, progress=False)


def small_manifest(shared_data: Path, out: Path) -> Path:
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    parts = []
    for prefix, n in PER_SOURCE.items():
        rows = source[source["path"].str.startswith(prefix + "/")].sort_values("path")
        parts.append(rows.iloc[np.linspace(0, len(rows) - 1, n).astype(int)])
    frame = pd.concat(parts)[["path", *LABELS]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = np.array(["train", "train", "train", "val", "test"])[np.arange(len(frame)) % 5]
    frame.to_csv(out, index=False)
    return out


def config(manifest: Path, out: Path, **kwargs) -> TrainConfig:
    base = dict(data=str(manifest), model="ldcsf_swin_micro", model_kwargs={"area_head": True}, out=str(out),
                freeze_backbone=True, feature_views=1, epochs=3, batch_size=16, lr=2e-3, warmup_epochs=0.2,
                patience=0, num_workers=0, accelerator="cpu", devices=1, progress=False)
    return TrainConfig(**{**base, **kwargs})


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ensemble")
    manifest = small_manifest(shared_data, tmp / "manifest.csv")
    cache = str(tmp / "cache")
    three = train(config(manifest, tmp / "k3", ensemble=3, feature_cache=cache))
    one = train(config(manifest, tmp / "k1", feature_cache=cache))
    return manifest, three, one


def real_batch(manifest: Path, n: int = 6) -> torch.Tensor:
    """Real tiles as the model takes them (64 px, ImageNet-normalised)."""
    paths = pd.read_csv(manifest)["path"].iloc[::7][:n]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    images = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((64, 64)), dtype=np.float32) / 255)
              for p in paths]
    return ((torch.stack(images) - mean) / std).permute(0, 3, 1, 2)


def test_a_k3_checkpoint_round_trips_and_predicts_its_members_mean(runs):
    manifest, three, _ = runs
    for path in (three.model_file, three.best_checkpoint):  # both containers, loaded with weights_only
        loaded = load_checkpoint(path)
        model = loaded.model
        assert isinstance(model, HeadEnsemble) and ensemble_size(model) == 3
        assert loaded.meta.model_kwargs["ensemble"] == 3 and loaded.meta.model_kwargs["ensemble_seeds"] == [0, 1, 2]
    # One backbone in the file, each member its own heads, and the members were trained apart.
    state = model.state_dict()
    assert not any(k.startswith("members.") and ".backbone." in k for k in state)
    assert not torch.equal(state["members.0.head.weight"], state["members.1.head.weight"])
    x = real_batch(manifest)
    with torch.inference_mode():
        logits, areas = model.forward_with_areas(x)
        member_logits, member_areas = model.forward_members(x)
    assert member_logits.shape == (3, len(x), 4) and member_areas.shape[:3] == (3, len(x), 4)
    assert torch.allclose(logits, member_logits.mean(0), atol=1e-6)
    assert torch.allclose(areas, member_areas.mean(0), atol=1e-6)
    assert torch.allclose(model(x), logits, atol=1e-6)
    assert (member_logits.std(0) > 0).any()  # the members disagree somewhere: a spread to report
    # Thresholds were tuned (on the mean's validation outputs) and are the ones the checkpoint carries.
    assert three.thresholds == pytest.approx(loaded.meta.thresholds) and three.thresholds != [0.5] * 4


def test_single_model_checkpoints_load_unchanged(runs):
    _, _, one = runs
    loaded = load_checkpoint(one.model_file)  # as a checkpoint written before ensembles existed: no `ensemble` key
    assert ensemble_size(loaded.model) == 1 and "ensemble" not in loaded.meta.model_kwargs
    assert not any(k.startswith("members.") for k in loaded.model.state_dict())


def test_the_shipped_model_holds_the_recipes_heads_on_one_backbone():
    from ldcsf.shipped import load_shipped

    recipe = recommended_settings()
    views = recipe.get("ensemble_views") or ["plain"]
    shipped = load_shipped()
    heads = recipe["ensemble"] * len(views)
    assert ensemble_size(shipped.model) == heads and shipped.meta.model_kwargs["ensemble"] == heads
    assert shipped.model.views == [view for view in views for _ in range(recipe["ensemble"])]
    state = shipped.model.state_dict()
    assert not any(k.startswith("members.") and ".backbone." in k for k in state)
    assert not torch.equal(state["members.0.head.weight"], state["members.1.head.weight"])


def test_fine_tuning_an_ensemble_keeps_and_trains_every_head(runs, tmp_path):
    """--init-from a K=3 checkpoint (as `docs/adapt.md` does from the recommended model): still K=3, each head moved."""
    manifest, three, _ = runs
    adapted = train(TrainConfig(data=str(manifest), model="ldcsf_swin_micro", init_from=str(three.model_file),
                                out=str(tmp_path / "run"),
                                epochs=1, batch_size=16, patience=0, num_workers=0, accelerator="cpu", devices=1,
                                progress=False, feature_cache=str(tmp_path / "cache")))
    before, after = load_checkpoint(three.model_file).model.state_dict(), load_checkpoint(adapted.model_file)
    assert ensemble_size(after.model) == 3 and after.meta.model_kwargs["ensemble_seeds"] == [0, 1, 2]
    state = after.model.state_dict()
    for k in range(3):
        heads = [name for name in state if name.startswith(f"members.{k}.")]
        assert heads and any(not torch.equal(before[name], state[name]) for name in heads), f"member {k} did not learn"


def test_ensemble_without_a_frozen_backbone_is_refused(runs, tmp_path):
    manifest = runs[0]
    with pytest.raises(ValueError, match=r"^--ensemble 3 trains heads on one frozen backbone: add --freeze-backbone$"):
        train(config(manifest, tmp_path / "run", ensemble=3, freeze_backbone=False))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="--ensemble must be"):
        train(config(manifest, tmp_path / "run", ensemble=0))
    with pytest.raises(ValueError, match="set by --ensemble"):
        train(config(manifest, tmp_path / "run", model_kwargs={"ensemble": 3}))


def test_the_cmu_slide_interval_carries_three_members(runs, shared_data, tmp_path):
    _, three, one = runs
    run_slide(shared_data / CMU, three.model_file, tmp_path / "k3", SLIDE)
    run_slide(shared_data / CMU, one.model_file, tmp_path / "k1", SLIDE)
    k3 = json.loads((tmp_path / "k3" / "tsr.json").read_text())
    k1 = json.loads((tmp_path / "k1" / "tsr.json").read_text())
    assert k3["tsr"]["interval_method"].endswith("widened by the spread of 3 ensemble members")
    assert "ensemble" not in k1["tsr"]["interval_method"] and "member_stroma_fractions" not in k1["tsr"]
    members = k3["tsr"]["member_stroma_fractions"]
    assert len(members) == 3 and len(set(members)) == 3 and all(0 <= f <= 1 for f in members)
    low, high = k3["tsr"]["stroma_fraction_interval"]
    k1_low, k1_high = k1["tsr"]["stroma_fraction_interval"]
    assert high - low >= k1_high - k1_low
    # ... and wider than the same tiles' sampling-only interval: the members' spread was added.
    tiles = pd.read_parquet(tmp_path / "k3" / "tiles.parquet")
    alone = stroma_fraction_interval(tiles, weighting=k3["tsr"]["weighting"])
    assert high - low > alone.high - alone.low
    # The tile table keeps its columns; the ensemble's mean is what it holds.
    assert list(tiles.columns) == list(pd.read_parquet(tmp_path / "k1" / "tiles.parquet").columns)
    if k3["hotspot"] is not None:
        assert "3 ensemble members" in k3["hotspot"]["interval_method"]


def test_the_ensemble_benchmark_scores_both_on_glas_quick(shared_data, tmp_path):
    """benchmarks/ensemble_heldout.py --quick: both recipes trained without GlaS, the ensemble's interval widened."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ensemble_glas"
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "ensemble_heldout.py"), "--quick", "--threads", "1",
                           "--data", str(shared_data), "--results", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, cwd=repo, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, three = json.loads(out.with_suffix(".json").read_text())["results"]
    recipe = recommended_recipe()
    assert one["recipe"] in (recipe, f"{recipe}_k1") and three["recipe"] == f"{recipe}_k3"
    assert one["mean_member_sd"] is None and three["mean_member_sd"] > 0
    assert all(0 <= r["coverage"] <= 1 and r["images"] > 0 for r in (one, three))
    model = load_checkpoint(tmp_path / "loso_work_ensemble" / f"{recipe}_k3" / "glas" / "run" / "model.pt").model
    assert ensemble_size(model) == 3
    # The fold keeps each member's areas beside the mean, which the interval's spread is made of.
    tiles = pd.read_csv(tmp_path / "loso_work_ensemble" / f"{recipe}_k3" / "glas" / "tile_areas.csv")
    members = [f"member{k}_area_{name}" for k in range(3) for name in ("stroma", "tumor")]
    assert set(members) <= set(tiles.columns)
    assert np.allclose(tiles[[f"member{k}_area_stroma" for k in range(3)]].mean(axis=1), tiles["area_stroma"], atol=0.05)
    assert f"| {recipe}_k3 |" in out.with_suffix(".md").read_text()


def recommended_recipe() -> str:
    """The README's recipe (benchmarks/_recipe.py), which the ensemble benchmark builds on."""
    return _recipes().RECOMMENDED


def recommended_settings() -> dict:
    """The README's recipe's training settings (benchmarks/_recipe.py)."""
    recipes = _recipes()
    return recipes.RECIPES[recipes.RECOMMENDED]


def _recipes():
    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, bench)
    try:
        import _recipe
    finally:
        sys.path.remove(bench)
    return _recipe


@pytest.mark.parametrize("tta", [False, True])
def test_member_outputs_leave_the_predicted_mean_unchanged(runs, tta):
    """The slide pipeline's per-member pass gives the same probabilities and areas as the plain one."""
    from ldcsf.inference.predictor import Predictor

    manifest, three, _ = runs
    model = load_checkpoint(three.model_file).model
    x = real_batch(manifest)
    with torch.inference_mode():
        plain = Predictor(model, tta=tta).predict_images(x)
        members = Predictor(model, tta=tta, members=True).predict_images(x)
    assert torch.allclose(plain["probs"], members["probs"], atol=1e-6)
    assert torch.allclose(plain["areas"], members["areas"], atol=1e-6)
    assert members["member_probs"].shape == (len(x), 3, 4) and members["member_areas"].shape[:3] == (len(x), 3, 4)


def test_each_member_walks_the_training_set_in_its_own_order():
    from ldcsf.training.area_data import CachedFeatureDataModule, CachedFeatureDataset

    def first_epochs(member_orders: int, seed: int) -> list[list[int]]:
        data = CachedFeatureDataModule({"train": SimpleNamespace(labels=LABELS)}, cache=None, views=1, batch_size=8,
                                       member_orders=member_orders, seed=seed)
        n = 40  # the loaders' order is under test: any cached maps serve
        data._data["train"] = CachedFeatureDataset(torch.zeros(n, 1, 2, 1, 1), torch.zeros(n, 1, 4, 1, 1),
                                                   torch.zeros(n, 4), train=True)
        loaders = data.train_dataloader()
        loaders = loaders if isinstance(loaders, list) else [loaders]
        return [torch.cat([b["index"] for b in loader]).tolist() for loader in loaders]

    orders = first_epochs(3, seed=0)
    assert len(orders) == 3 and all(sorted(o) == list(range(40)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3  # three different walks
    assert first_epochs(3, seed=0) == orders  # seeded: a rerun walks the same
    assert first_epochs(3, seed=1) != orders
    assert len(first_epochs(1, seed=0)) == 1  # a single model keeps its one loader
