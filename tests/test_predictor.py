"""The one predictor (`ldcsf.inference.Predictor`) that evaluate, predict and slide share.

Real micro models on real H&E tiles: a dict batch of normalised images and a tuple batch of
uint8 tiles give the model's own sigmoid outputs; an area head adds its maps; data sets are
gathered in order, each image once, on one process and on two (Lightning DDP, gloo).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.data.dataset import ImageFileDataset, load_rgb
from ldcsf.data.transforms import eval_transforms
from ldcsf.evaluation.evaluate import evaluate
from ldcsf.inference.dataset_prediction import predict_dataset
from ldcsf.inference.predictor import Predictor, model_outputs
from ldcsf.options import PredictOptions

CPU = PredictOptions(accelerator="cpu", devices=1, num_workers=0, batch_size=4, progress=False)


def real_tiles(shared_data, n: int) -> list:
    return sorted((shared_data / "nct_crc").iterdir())[:n]


@pytest.fixture(scope="module")
def micro_checkpoints(tmp_path_factory):
    """Seeded random micro models, plain and with an area head, saved as checkpoints."""
    folder = tmp_path_factory.mktemp("predictor")
    paths = {}
    for area in (False, True):
        torch.manual_seed(0)
        model = create_model("ldcsf_swin_micro", area_head=area).eval()
        paths[area] = save_checkpoint(folder / f"micro-area{int(area)}.pt", model, CheckpointMeta.for_model(model))
    return paths


def test_dict_and_tuple_batches_give_the_models_own_probabilities(shared_data, micro_checkpoints):
    loaded = load_checkpoint(micro_checkpoints[False])
    meta = loaded.meta
    transform = eval_transforms(meta)
    paths = real_tiles(shared_data, 3)
    images = torch.stack([transform(load_rgb(p)) for p in paths])
    predictor = Predictor(loaded.model, meta.mean, meta.std).eval()
    with torch.no_grad():
        expected = torch.sigmoid(loaded.model(images))
        out = predictor.predict_step({"image": images, "index": torch.arange(3), "ok": torch.tensor([1, 1, 0])}, 0)
    assert set(out) == {"index", "ok", "probs"}  # per-image tensors travel along, pixels do not
    torch.testing.assert_close(out["probs"], expected)
    assert out["ok"].tolist() == [1, 1, 0]

    # uint8 (N, H, W, 3) tiles are normalised by the predictor itself with the checkpoint's mean/std.
    size = meta.input_size
    tiles = torch.stack([torch.from_numpy(np.array(load_rgb(p).resize((size, size)))) for p in paths])
    with torch.no_grad():
        out = predictor.predict_step((tiles, torch.arange(3)), 0)
        normalised = (tiles.permute(0, 3, 1, 2).float() / 255 - torch.tensor(meta.mean).view(1, 3, 1, 1)) \
            / torch.tensor(meta.std).view(1, 3, 1, 1)
        torch.testing.assert_close(out["probs"], torch.sigmoid(loaded.model(normalised)), rtol=1e-4, atol=1e-5)


def test_an_area_head_adds_its_maps_from_the_same_pass(shared_data, micro_checkpoints):
    loaded = load_checkpoint(micro_checkpoints[True])
    transform = eval_transforms(loaded.meta)
    images = torch.stack([transform(load_rgb(p)) for p in real_tiles(shared_data, 2)])
    with torch.no_grad():
        logits, areas = model_outputs(loaded.model, images)
        out = Predictor(loaded.model).predict_step({"image": images, "index": torch.arange(2)}, 0)
        torch.testing.assert_close(logits, loaded.model(images))  # the area head leaves presence as it was
    assert areas is not None and out["areas"].shape == (2, len(loaded.meta.labels), *areas.shape[-2:])
    torch.testing.assert_close(out["areas"], torch.sigmoid(areas))
    assert model_outputs(load_checkpoint(micro_checkpoints[False]).model, images)[1] is None


def test_a_data_set_is_gathered_in_order_with_unreadable_files_flagged(shared_data, micro_checkpoints, tmp_path):
    loaded = load_checkpoint(micro_checkpoints[True])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    paths = [*real_tiles(shared_data, 5), broken, *real_tiles(shared_data, 7)[5:]]
    dataset = ImageFileDataset(paths, eval_transforms(loaded.meta), loaded.meta.input_size)
    predictions = predict_dataset(loaded, dataset, CPU)  # batches of 4: the last one is short
    assert predictions.index.tolist() == list(range(len(paths))) and predictions.is_global_zero
    assert predictions.extra["ok"].tolist() == [1] * 5 + [0] + [1] * 2
    assert predictions.extra["areas"].shape[:2] == (len(paths), len(loaded.meta.labels))
    with torch.no_grad():
        direct = torch.sigmoid(loaded.model(torch.stack([dataset[i]["image"] for i in range(len(paths))])))
    np.testing.assert_allclose(predictions.probs, direct.numpy(), rtol=1e-5, atol=1e-6)


def test_evaluate_on_two_ddp_processes_equals_one_process(shared_data, micro_checkpoints, tmp_path):
    # 11 images, batches of 4: each process gets 6 (the sampler repeats one), every image is scored once.
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = source[source["path"].str.startswith(("nct_crc/", "oral/"))].sort_values("path").iloc[::40][:11]
    frame = rows[["path", "stroma", "necrosis", "non_tumor", "tumor"]].copy()
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    evaluate(micro_checkpoints[False], tmp_path / "manifest.csv", tmp_path / "one", split="all", options=CPU)
    command = [sys.executable, "-m", "ldcsf.cli.main", "evaluate", "--checkpoint", str(micro_checkpoints[False]),
               "--data", str(tmp_path / "manifest.csv"), "--split", "all", "--out", str(tmp_path / "two"),
               "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--batch-size", "4",
               "--num-workers", "0", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (pd.read_csv(tmp_path / name / "predictions.csv") for name in ("one", "two"))
    assert len(one) == 11 and one["path"].tolist() == frame["path"].tolist()
    probs = [c for c in one.columns if c.endswith("_prob")]
    pd.testing.assert_frame_equal(one.drop(columns=probs), two.drop(columns=probs))
    # Other batch compositions may change the last float bits (see test_slide_ddp).
    assert (one[probs] - two[probs]).abs().to_numpy().max() <= 1e-5
