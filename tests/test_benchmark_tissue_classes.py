"""heldout_tissue_classes.py: what each tissue class is read as by fold models that never saw its source."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from test_benchmarks import BENCH, bench_module, run_script

RECIPE = "lite0_area_mid_views_ens3"



def test_the_class_table_averages_each_class_over_tiles_and_folds():
    bench = bench_module("heldout_tissue_classes")
    tiles = pd.DataFrame({
        "source": ["nct_crc"] * 6, "source_class": ["LYM", "LYM", "TUM", "LYM", "LYM", "TUM"],
        "fold": ["seed0"] * 3 + ["seed1"] * 3,
        "area_stroma": [0.8, 0.6, 0.1, 0.4, 0.2, 0.3], "area_necrosis": [0.0] * 6,
        "area_non_tumor": [0.1, 0.7, 0.0, 0.5, 0.1, 0.0], "area_tumor": [0.0, 0.2, 0.6, 0.1, 0.6, 0.1]})
    table = bench.class_table(tiles).set_index("source_class")
    lym, tum = table.loc["LYM"], table.loc["TUM"]
    assert lym["tiles"] == 2 and lym["folds"] == 2  # tiles per fold, folds counted apart
    assert lym["area_stroma"] == pytest.approx(0.5) and lym["area_non_tumor"] == pytest.approx(0.35)
    # Largest area: stroma, non-tumour, non-tumour, tumour over the four LYM rows.
    assert (lym["largest_stroma"], lym["largest_non_tumor"], lym["largest_tumor"]) == pytest.approx((0.25, 0.5, 0.25))
    assert lym["stroma_share"] == pytest.approx(np.mean([1.0, 0.75, 0.8, 0.25]))
    assert tum["largest_tumor"] == 0.5 and tum["largest_stroma"] == 0.5


def test_fold_models_are_run_over_their_own_source(tmp_path, shared_data):
    """A real (untrained micro) checkpoint with an area head as two seeds' folds, over four real NCT-CRC-HE tiles."""
    import torch

    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import eval_transforms

    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True)
    meta = CheckpointMeta.for_model(model, thresholds=[0.5] * 4, mpp=1.0)
    for seed in (0, 1):
        folder = tmp_path / f"seed{seed}_with_glas" / RECIPE / "nct_crc" / "run"
        folder.mkdir(parents=True)
        save_checkpoint(folder / "model.pt", model, meta)
    paths = sorted((shared_data / "nct_crc").glob("STR-*"))[:2] + sorted((shared_data / "nct_crc").glob("LYM-*"))[:2]
    manifest = pd.DataFrame({"path": [str(p.resolve()) for p in paths], "dataset": "nct_crc",
                             "source_class": ["STR", "STR", "LYM", "LYM"]})
    manifest = pd.concat([manifest, manifest.assign(dataset="oral", source_class="Normal")])  # another source: left out
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "classes"
    run_script("heldout_tissue_classes.py", "--recipe", RECIPE, "--work", str(tmp_path / "seed0_with_glas"),
               str(tmp_path / "seed1_with_glas"), "--sources", "nct_crc", "--manifest", str(tmp_path / "manifest.csv"),
               "--threads", "1", "--out", str(out))
    classes = {r["source_class"]: r for r in json.loads(out.with_suffix(".json").read_text())["classes"]}
    assert set(classes) == {"STR", "LYM"} and classes["STR"]["tiles"] == 2 and classes["STR"]["folds"] == 2

    loaded = load_checkpoint(tmp_path / "seed0_with_glas" / RECIPE / "nct_crc" / "run" / "model.pt")
    transform = eval_transforms(loaded.meta)
    with torch.inference_mode():
        _, areas = loaded.model.forward_with_areas(torch.stack([transform(load_rgb(p)) for p in paths[:2]]))
    expected = torch.sigmoid(areas).mean((-2, -1)).mean(0).numpy()  # the two STR tiles, the same model in both folds
    assert [classes["STR"][f"area_{n}"] for n in ("stroma", "necrosis", "non_tumor", "tumor")] == pytest.approx(
        expected.tolist(), abs=1e-5)
    assert "| nct_crc | LYM | 2 | 2 |" in out.with_suffix(".md").read_text()


def test_a_missing_fold_is_named(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,dataset,source_class\n")
    import subprocess

    proc = subprocess.run([sys.executable, str(BENCH / "heldout_tissue_classes.py"), "--work", str(tmp_path / "w"),
                           "--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no fold model (run loso.py for it)" in proc.stderr
    assert not (tmp_path / "x.json").exists()
