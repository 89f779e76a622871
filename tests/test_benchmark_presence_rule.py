"""heldout_presence_rule.py: per-tile presence on a held-out source, from the presence head or the area head."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_benchmarks import BENCH, bench_module, run_script

RECIPE = "lite0_area_mid_views_ens3"



def test_balanced_accuracy_does_not_reward_calling_everything_present():
    bench = bench_module("heldout_presence_rule")
    truth = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0])
    everywhere = bench.scores(truth, np.ones(10))
    assert everywhere["accuracy"] == pytest.approx(0.9) and everywhere["balanced_accuracy"] == pytest.approx(0.5)
    assert everywhere["called"] == 1.0 and everywhere["present"] == pytest.approx(0.9)
    half = bench.scores(truth, np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]))
    assert half["balanced_accuracy"] == pytest.approx((3 / 9 + 1) / 2)
    assert bench.scores(np.ones(3), np.ones(3))["balanced_accuracy"] is None  # one class: no balance to strike


def test_each_label_is_read_at_its_threshold_and_at_five_percent_of_area():
    bench = bench_module("heldout_presence_rule")
    held = pd.DataFrame({"stroma": [1, 0, 1, np.nan], "tumor": [0, 1, 1, 0]})
    probs = np.array([[0.9, 0.2], [0.6, 0.8], [0.2, 0.9], [0.9, 0.1]])
    areas = np.array([[0.30, 0.01], [0.04, 0.50], [0.06, 0.20], [0.9, 0.9]])
    out = bench.fold_scores(["stroma", "tumor"], probs, np.array([0.7, 0.5]), areas, held)
    # Stroma: the unlabelled fourth tile is not scored; the head calls tile 1 only, the area tiles 1 and 3.
    assert out["stroma"]["head"]["accuracy"] == pytest.approx(2 / 3)
    assert out["stroma"]["area"]["accuracy"] == pytest.approx(1.0)
    assert out["tumor"]["area"]["called"] == pytest.approx(0.75)  # the fourth tile's 0.9 counts: tumour is labelled there
    assert set(out) == {"stroma", "tumor"}


def test_fold_models_are_read_over_their_own_source(tmp_path, shared_data):
    """A real (untrained micro) checkpoint with an area head as seed 0's NCT-CRC-HE fold, over four real tiles."""
    import torch

    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import eval_transforms

    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True)
    thresholds = [0.5, 0.5, 0.5, 0.5]
    folder = tmp_path / "seed0_with_glas" / RECIPE / "nct_crc" / "run"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.pt", model, CheckpointMeta.for_model(model, thresholds=thresholds, mpp=1.0))
    paths = sorted((shared_data / "nct_crc").glob("STR-*"))[:2] + sorted((shared_data / "nct_crc").glob("TUM-*"))[:2]
    manifest = pd.DataFrame({"path": [str(p.resolve()) for p in paths], "dataset": "nct_crc",
                             "source_class": ["STR", "STR", "TUM", "TUM"],
                             "stroma": [1, 1, 0, 0], "necrosis": 0, "non_tumor": 0, "tumor": [0, 0, 1, 1]})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "presence"
    run_script("heldout_presence_rule.py", "--recipe", RECIPE, "--root", str(tmp_path), "--sources", "nct_crc",
               "--manifest", str(tmp_path / "manifest.csv"), "--recompute-maps", "--threads", "1", "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())["sources"]["nct_crc"]

    loaded = load_checkpoint(folder / "model.pt")
    batch = torch.stack([eval_transforms(loaded.meta)(load_rgb(p)) for p in paths])
    with torch.inference_mode():
        logits, areas = loaded.model.forward_with_areas(batch)
    stroma_area = torch.sigmoid(areas).mean((-2, -1))[:, 0].numpy()
    stroma_prob = torch.sigmoid(logits)[:, 0].numpy()
    truth = np.array([1, 1, 0, 0], bool)
    stroma = result["mean"]["stroma"]
    assert stroma["area"]["accuracy"] == pytest.approx(float(((stroma_area >= 0.05) == truth).mean()))
    assert stroma["head"]["accuracy"] == pytest.approx(float(((stroma_prob >= 0.5) == truth).mean()))
    assert result["tiles"] == 4 and "| nct_crc | stroma | 50 % |" in out.with_suffix(".md").read_text()
    # Per class: the two STR tiles' mean stroma probability and the share of them called at the threshold.
    by_class = {r["source_class"]: r for r in json.loads(out.with_suffix(".json").read_text())["classes"]["nct_crc"]}
    assert by_class["STR"]["tiles"] == 2 and by_class["STR"]["p_stroma"] == pytest.approx(float(stroma_prob[:2].mean()), abs=1e-6)
    assert by_class["TUM"]["called_stroma"] == pytest.approx(float((stroma_prob[2:] >= 0.5).mean()))


def test_a_missing_fold_is_named(tmp_path):
    pd.DataFrame({"path": ["x.png"], "dataset": ["nct_crc"], "stroma": [1]}).to_csv(tmp_path / "m.csv", index=False)
    proc = subprocess.run([sys.executable, str(BENCH / "heldout_presence_rule.py"), "--root", str(tmp_path / "w"),
                           "--sources", "nct_crc", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no fold model (run loso.py for it)" in proc.stderr
    assert not (tmp_path / "x.json").exists()
