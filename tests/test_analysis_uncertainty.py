"""The stroma fraction's 95 % interval: block bootstrap, ensemble widening, and the slide outputs that carry it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf import create_model
from ldcsf.analysis.uncertainty import block_ids, stroma_fraction_interval, straddles
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.export.slide_outputs import TSR_JSON, cohort_summary_columns
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.wholeslide.cohort import cohort_table
from ldcsf.viewer.outputs import OutputFolder, read_tsr_json

CMU = "slides/CMU-1-Small-Region.svs"
INTERVAL_COLUMNS = ["stroma_fraction_low", "stroma_fraction_high", "near_cutoff"]


@pytest.fixture(scope="module")
def cmu_run(shared_data, tmp_path_factory):
    """The CMU slide through `run_cohort` with a micro model (64 px = 80 µm: ~100 tiles)."""
    torch.manual_seed(0)  # an untrained model: its outputs must not depend on which tests ran first
    model = create_model("ldcsf_swin_micro")
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    checkpoint = save_checkpoint(path, model, CheckpointMeta.for_model(model, thresholds=[0.5] * 4, mpp=1.25))
    out = tmp_path_factory.mktemp("cmu")
    table = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(batch_size=32, progress=False))
    return out, table


def test_slide_outputs_carry_the_interval(cmu_run):
    out, table = cmu_run
    slide_dir = out / "CMU-1-Small-Region"
    info = json.loads((slide_dir / TSR_JSON).read_text())
    whole = info["tsr"]
    low, high = whole["stroma_fraction_interval"]
    assert 0 <= low <= whole["stroma_fraction"] <= high <= 1 and high - low > 0
    assert whole["near_cutoff"] == (low <= 0.5 < high)
    assert "block bootstrap" in whole["interval_method"] and "2000 resamples" in whole["interval_method"]
    if info["hotspot"] is not None:
        h_low, h_high = info["hotspot"]["stroma_fraction_interval"]
        assert h_low <= info["hotspot"]["stroma_fraction"] <= h_high
    cohort = pd.read_csv(out / "cohort.csv")
    assert list(cohort.columns) == cohort_summary_columns
    assert cohort.loc[0, "stroma_fraction_low"] == pytest.approx(low)
    assert cohort.loc[0, "stroma_fraction_high"] == pytest.approx(high)
    report = (slide_dir / "report.html").read_text()
    assert "95 % interval" in report and ("near the cut-off" in report) == whole["near_cutoff"]


def test_the_same_tissue_twice_as_wide_gives_a_narrower_interval(cmu_run):
    out, _ = cmu_run
    tiles = pd.read_parquet(out / "CMU-1-Small-Region" / "tiles.parquet")
    one = stroma_fraction_interval(tiles)
    # Four copies of the slide's real tile grid side by side: the same fraction from 4x the blocks.
    rows, cols = tiles["row"].max() + 8, tiles["col"].max() + 8
    four = pd.concat([tiles.assign(row=tiles["row"] + i * rows, col=tiles["col"] + j * cols)
                      for i in (0, 1) for j in (0, 1)], ignore_index=True)
    wide = stroma_fraction_interval(four)
    assert wide.high - wide.low < 0.75 * (one.high - one.low)
    assert wide.low <= one.high and one.low <= wide.high  # the same point estimate inside both
    assert stroma_fraction_interval(tiles) == one  # fixed seed: a rerun gives the same interval


def test_ensemble_spread_widens_and_straddle_flag(cmu_run):
    out, _ = cmu_run
    tiles = pd.read_parquet(out / "CMU-1-Small-Region" / "tiles.parquet")
    alone = stroma_fraction_interval(tiles)
    point = (alone.low + alone.high) / 2
    wider = stroma_fraction_interval(tiles, member_fractions=[point - 0.1, point, point + 0.1])
    assert wider.low < alone.low and wider.high > alone.high and "3 ensemble members" in wider.method
    assert stroma_fraction_interval(tiles, member_fractions=[point]) == alone  # one member: sampling only
    assert straddles(0.45, 0.55) and not straddles(0.51, 0.7) and not straddles(0.3, 0.5)
    no_stroma = tiles.assign(prob_stroma=0.0, prob_tumor=0.0)
    assert stroma_fraction_interval(no_stroma) is None


def test_block_ids_group_neighbouring_tiles():
    rows, cols = np.array([0, 3, 4, 0, 7]), np.array([0, 3, 0, 4, 7])
    ids = block_ids(rows, cols, 4)
    assert ids[0] == ids[1] and len(set(ids)) == 4
    with pytest.raises(ValueError, match="at least 1 tile"):
        block_ids(rows, cols, 0)


def test_an_old_tsr_json_without_intervals_still_reads(cmu_run, tmp_path):
    out, _ = cmu_run
    folder = tmp_path / "old" / "CMU-1-Small-Region"
    folder.mkdir(parents=True)
    info = json.loads((out / "CMU-1-Small-Region" / TSR_JSON).read_text())
    for part in ("tsr", "hotspot"):
        for key in ("stroma_fraction_interval", "interval_method", "near_cutoff"):
            (info[part] or {}).pop(key, None)
    info["cohort_row"] = {k: v for k, v in info["cohort_row"].items() if "low" not in k and "high" not in k
                          and "near" not in k}
    (folder / TSR_JSON).write_text(json.dumps(info))
    assert "stroma_fraction_interval" not in read_tsr_json(folder)["tsr"]
    table = cohort_table(tmp_path / "old", [])
    assert table.loc[0, "slide_id"] == "CMU-1-Small-Region" and table[INTERVAL_COLUMNS].isna().all().all()
    (entry,) = OutputFolder(tmp_path / "old").entries.values()
    assert entry.summary()["stroma_fraction_low"] is None
