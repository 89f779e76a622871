"""heldout_tta.py: the masked folds' held-out tiles scored as `ldcsf slide` does, with and without --tta."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from test_benchmarks import run_script

RECIPE = "lite0_area_mid_views_ens3"


def make_fold(folder, paths, model, meta) -> None:
    """A fold as loso.py leaves it: model.pt and tile_areas.csv (images of two tiles each, made-up masks)."""
    from ldcsf.checkpoint import save_checkpoint

    (folder / "run").mkdir(parents=True)
    save_checkpoint(folder / "run" / "model.pt", model, meta)
    n = len(paths)
    pd.DataFrame({"path": [str(p) for p in paths], "source_image": [f"img{i // 2}.png" for i in range(n)],
                  "x": [0] * n, "y": [0] * n, "frac_stroma": np.linspace(0.2, 0.8, n), "frac_tumor": np.linspace(0.7, 0.1, n),
                  "row": [i % 2 for i in range(n)], "col": [0] * n,
                  **{f"area_{k}": [0.1] * n for k in ("stroma", "necrosis", "non_tumor", "tumor")}}
                 ).to_csv(folder / "tile_areas.csv", index=False)


def test_both_modes_score_the_tiles_as_the_slide_predictor_does(tmp_path, shared_data):
    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, load_checkpoint
    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import eval_transforms

    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True).eval()
    meta = CheckpointMeta.for_model(model, thresholds=[0.5] * 4, mpp=1.0)
    paths = sorted((shared_data / "nct_crc").glob("TUM-*"))[:3] + sorted((shared_data / "nct_crc").glob("STR-*"))[:3]
    make_fold(tmp_path / "seed0" / RECIPE / "glas", paths, model, meta)
    make_fold(tmp_path / "seed0_with_glas" / RECIPE / "wsss4luad_masks", paths[::-1], model, meta)
    out = tmp_path / "tta"
    run_script("heldout_tta.py", "--recipe", RECIPE, "--root", str(tmp_path), "--seeds", "0", "--threads", "1",
               "--out", str(out))

    fold = tmp_path / "seed0" / RECIPE / "glas"
    loaded = load_checkpoint(fold / "run" / "model.pt")
    batch = torch.stack([eval_transforms(loaded.meta)(load_rgb(p)) for p in paths])
    with torch.inference_mode():
        views = [torch.sigmoid(loaded.model.forward_with_areas(v)[1]).mean((-2, -1)) for v in
                 (batch, batch.flip(-1), batch.flip(-2))]
    plain = pd.read_csv(fold / "tile_areas_slide_plain.csv")
    tta = pd.read_csv(fold / "tile_areas_slide_tta.csv")
    assert plain["area_stroma"].to_numpy() == pytest.approx(views[0][:, 0].numpy(), abs=1e-5)
    assert tta["area_tumor"].to_numpy() == pytest.approx(torch.stack(views).mean(0)[:, 3].numpy(), abs=1e-5)
    assert not np.allclose(plain["area_tumor"], tta["area_tumor"])  # the mirror images do change the answer
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["results"]) == {"plain", "tta"} and len(result["folds"]) == 4
    assert result["results"]["plain"]["by_source"]["glas"]["mae"] >= 0
    assert 0 < result["plain_vs_cached_max_difference"]  # the folds' own table held made-up areas
    assert "| `tta` |" in out.with_suffix(".md").read_text()
