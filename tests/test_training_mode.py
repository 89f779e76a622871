"""Frozen-backbone training: which mode the heads train in.

Lightning keeps whatever mode the model is in when training starts, and the backbone maps are
computed while Lightning sets up the loaders, inside `fit`: `FeatureCache.load` leaves the whole
model in eval mode, so the heads train in eval mode (BatchNorm on its initial statistics, dropout
off). BatchNorm's batch counter shows which mode training ran in: it only counts in training mode.

The tests state what training-mode heads would look like and are expected to fail: training-mode
heads were measured worse on held-out sources (GlaS stroma-fraction MAE and stroma AUROC,
WSSS4LUAD Spearman and tumour AUROC; docs/results.md, "Heads trained in training mode"). A change that makes them pass changes the
recommended recipe's training and needs those measurements again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from torch import nn

from ldcsf import create_model
from ldcsf.checkpoint import load_checkpoint
from ldcsf.data.manifest import read_manifest
from ldcsf.training import TrainConfig, train
from ldcsf.training.area_data import FeatureCache

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]

#: The current behaviour, kept on purpose (measured); strict, so that a change to it is seen.
EVAL_MODE_HEADS = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="frozen-backbone heads train in eval mode (kept: training mode scored worse on held-out GlaS MAE "
           "and WSSS4LUAD Spearman, docs/results.md)")


@pytest.fixture(scope="module")
def nct_manifest(shared_data, tmp_path_factory):
    """24 real NCT-CRC-HE tiles: every fourth in val, the rest in train."""
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    nct = source[source["path"].str.startswith("nct_crc/")].head(24)
    frame = nct.assign(path=[str(shared_data / p) for p in nct["path"]],
                       split=["val" if i % 4 == 3 else "train" for i in range(len(nct))])[["path", *LABELS, "split"]]
    frame[LABELS] = frame[LABELS].replace("", np.nan).astype(float)
    out = tmp_path_factory.mktemp("modes") / "manifest.csv"
    frame.to_csv(out, index=False)
    return out


def head_modules(model) -> list[tuple[str, nn.Module]]:
    backbone = {id(m) for m in model.backbone_module().modules()}
    return [(name, m) for name, m in model.named_modules() if id(m) not in backbone]


@EVAL_MODE_HEADS
def test_loading_cached_maps_leaves_every_module_in_its_mode(nct_manifest, tmp_path):
    model = create_model("ldcsf_swin_micro", labels=LABELS, area_head=True).train()
    model.backbone_module().eval()  # what --freeze-backbone does
    data = model.data_config()
    cache = FeatureCache(tmp_path, model, int(model.img_size[0]), data["mean"], data["std"], LABELS)
    manifest = read_manifest(nct_manifest, labels=LABELS)
    features, _ = cache.load(manifest, views=1, progress=False)
    assert features.shape[0] == len(manifest)
    assert not any(m.training for m in model.backbone_module().modules())
    heads = head_modules(model)
    assert heads and all(m.training for _, m in heads), [n for n, m in heads if not m.training]


@EVAL_MODE_HEADS
def test_frozen_backbone_heads_train_in_training_mode(nct_manifest, tmp_path):
    config = TrainConfig(data=str(nct_manifest), model="ldcsf_swin_micro", model_kwargs={"area_head": True},
                         out=str(tmp_path / "run"), epochs=2, batch_size=6, lr=2e-3, warmup_epochs=0.2, patience=0,
                         num_workers=0, accelerator="cpu", devices=1, progress=False, freeze_backbone=True,
                         feature_views=1, feature_cache=str(tmp_path / "cache"))
    model = load_checkpoint(train(config).model_file).model
    norms = [(name, m) for name, m in head_modules(model) if isinstance(m, nn.BatchNorm2d)]
    assert norms, "the LDCSF heads have BatchNorm layers"
    # 18 training tiles in batches of 6: 3 steps an epoch; the best epoch's weights were kept.
    counted = {name: int(m.num_batches_tracked) for name, m in norms}
    assert all(n in (3, 6) for n in counted.values()), counted
