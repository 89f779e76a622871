"""The split of CPU cores between tile readers and the model is chosen from measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.wholeslide import SlideSettings
from ldcsf.wholeslide.core_split import MIN_TILES_TO_MEASURE, candidate_splits, predicted_tiles_per_s, settle_split
from ldcsf.wsi import TileSpec, detect_tissue, open_slide, tile_grid

CMU = "slides/CMU-1-Small-Region.svs"


def test_candidates_use_the_cores():
    assert candidate_splits(2) == [(0, 2), (1, 1)]
    assert candidate_splits(8) == [(0, 8), (1, 7), (2, 6), (3, 5), (4, 4)]
    assert candidate_splits(1) == [(0, 1)]
    assert candidate_splits(4, fixed_threads=2) == [(0, 2), (1, 2), (2, 2), (3, 2)]


def test_prediction_follows_the_slower_side():
    model = {2: 0.010, 1: 0.018}  # s per tile: two threads are not twice one
    # Cheap reading: reading in the main process and giving the model both cores wins.
    assert predicted_tiles_per_s(0, 2, 0.002, model) == pytest.approx(1 / 0.012)
    assert predicted_tiles_per_s(1, 1, 0.002, model) == pytest.approx(1 / 0.018)
    # Expensive reading (a slow codec): a reader process beside the model wins.
    assert predicted_tiles_per_s(1, 1, 0.015, model) > predicted_tiles_per_s(0, 2, 0.015, model)


def test_split_measured_on_a_real_slide(shared_data, tmp_path):
    from ldcsf.inference import Predictor
    from ldcsf.wholeslide import TileDataset
    from ldcsf.wholeslide.core_split import choose_split

    model = create_model("ldcsf_swin_micro")
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, CheckpointMeta.for_model(model, mpp=1.25)))
    with open_slide(shared_data / CMU) as slide:
        thumb, down = slide.thumbnail(1024)
        tiles = tile_grid(slide.dimensions, TileSpec.for_model(64, 1.25, slide.mpp), detect_tissue(thumb, down, slide.mpp))
    boxes = tiles[["x", "y", "width", "height"]].to_numpy()
    data = TileDataset(shared_data / CMU, boxes[:8], range(8), 64)
    before = torch.get_num_threads()
    try:
        split = choose_split(data.read_tile, len(data), lambda t: loaded.model, Predictor(loaded.model).normalise,
                             cores=2)
        assert (split.workers, split.threads) in candidate_splits(2)
        assert split.read_s_per_tile > 0 and set(split.model_s_per_tile) == {1, 2}
        # The chosen split is the best of the measured predictions, and torch now runs with its threads.
        best = max(predicted_tiles_per_s(w, t, split.read_s_per_tile, split.model_s_per_tile) for w, t in candidate_splits(2))
        assert split.tiles_per_s == pytest.approx(best)
        assert torch.get_num_threads() == split.threads

        settings = SlideSettings(num_workers=None, accelerator="cpu", progress=False)
        assert settle_split(settings, loaded, shared_data / CMU, boxes[:64]).num_workers == 0  # too few to time
        assert settings.num_workers is None
        boxes = np.concatenate([boxes] * (MIN_TILES_TO_MEASURE // len(boxes) + 1))  # enough tiles to be timed
        settle_split(settings, loaded, shared_data / CMU, boxes)
        chosen = settings.num_workers
        assert isinstance(chosen, int) and chosen >= 0
        settle_split(settings, loaded, shared_data / CMU, boxes[::-1])
        assert settings.num_workers == chosen  # measured once, kept for the rest of the cohort
    finally:
        data.close()
        torch.set_num_threads(before)
