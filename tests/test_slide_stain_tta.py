"""Stain normalisation and flip test-time augmentation in slide inference, on the real CMU slide."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.data.transforms import MacenkoNormalizer
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.wholeslide.tile_dataset import TileDataset
from ldcsf.inference.predictor import Predictor

CMU = "slides/CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro")
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    return save_checkpoint(path, model, CheckpointMeta.for_model(model, mpp=1.25))


def _run(shared_data, checkpoint, out, **settings):
    run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(limit_tiles=12, progress=False, **settings))
    slide_dir = out / "CMU-1-Small-Region"
    return pd.read_parquet(slide_dir / "tiles.parquet"), json.loads((slide_dir / "tsr.json").read_text())


def test_flip_tta_averages_the_tile_and_its_mirror_images():
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro").eval()
    images = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    index = torch.arange(3)
    plain, tta = Predictor(model, (0.5,) * 3, (0.25,) * 3), Predictor(model, (0.5,) * 3, (0.25,) * 3, tta=True)
    with torch.no_grad():
        x = plain.normalise(images.clone())
        expected = torch.stack([model(v).sigmoid() for v in (x, x.flip(-1), x.flip(-2))]).mean(0)
        torch.testing.assert_close(tta.predict_step((images.clone(), index), 0)["probs"], expected)
        assert not torch.allclose(plain.predict_step((images.clone(), index), 0)["probs"], expected)


def test_slide_options_change_the_tiles_and_are_recorded(shared_data, checkpoint, tmp_path):
    plain, plain_json = _run(shared_data, checkpoint, tmp_path / "plain")
    tta, tta_json = _run(shared_data, checkpoint, tmp_path / "tta", tta=True)
    macenko, macenko_json = _run(shared_data, checkpoint, tmp_path / "macenko", stain_norm="macenko")
    columns = [c for c in plain.columns if c.startswith("prob_")]
    for other in (tta, macenko):
        assert len(other) == len(plain) == 12
        assert not np.allclose(other[columns].to_numpy(), plain[columns].to_numpy())
    assert plain_json["settings"]["tta"] is False and plain_json["settings"]["stain_norm"] is None
    assert tta_json["settings"]["tta"] is True
    assert macenko_json["settings"]["stain_norm"] == MacenkoNormalizer().state()


def test_macenko_reference_travels_as_numbers(shared_data):
    reference = shared_data / "unlabelled" / "tiatoolbox_target_image.png"
    fitted = MacenkoNormalizer(reference)
    state = fitted.state()
    assert state != MacenkoNormalizer().state()
    again = MacenkoNormalizer.from_state(json.loads(json.dumps(state)))
    tile = TileDataset(shared_data / CMU, np.array([[800, 800, 256, 256]]), [0], 128).read_tile(0)
    normalised = again.normalize_array(tile)
    assert normalised.shape == tile.shape and normalised.dtype == np.uint8
    np.testing.assert_array_equal(normalised, fitted.normalize_array(tile))
    assert np.abs(normalised.astype(int) - tile.astype(int)).mean() > 1  # it did change the colours
    blank = np.full((64, 64, 3), 255, dtype=np.uint8)  # no tissue: returned as it was
    np.testing.assert_array_equal(again.normalize_array(blank), blank)
