"""A short real training run of the micro model on real H&E tiles, then evaluate and predict.

One run (module fixture) serves all tests: about 60 tiles from three sources, four labels
with blanks where a source does not annotate a label.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf.checkpoint import load_checkpoint
from ldcsf.data.dataset import ManifestDataset
from ldcsf.data.manifest import read_manifest
from ldcsf.data.transforms import build_transforms
from ldcsf.evaluation.evaluate import evaluate
from ldcsf.options import PredictOptions
from ldcsf.inference.image_prediction import predict_images
from ldcsf.training import TrainConfig, train

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]
PER_SOURCE = {"nct_crc": 24, "oral": 18, "osteosarcoma": 18}
CPU = PredictOptions(accelerator="cpu", devices=1, num_workers=0, batch_size=32, progress=False)


def make_manifest(shared_data: Path, out: Path, broken: Path | None = None) -> Path:
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    parts = []
    for prefix, n in PER_SOURCE.items():
        rows = source[source["path"].str.startswith(prefix + "/")].sort_values("path")
        parts.append(rows.iloc[np.linspace(0, len(rows) - 1, n).astype(int)])
    frame = pd.concat(parts)[["path", *LABELS]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = np.array(["train", "train", "train", "val", "test"])[np.arange(len(frame)) % 5]
    if broken is not None:
        frame.loc[len(frame)] = [str(broken), "1", "", "", "0", "train"]
    frame.to_csv(out, index=False)
    return out


def config(manifest: Path, out: Path, **kwargs) -> TrainConfig:
    base = dict(data=str(manifest), model="ldcsf_swin_micro", out=str(out), epochs=4, batch_size=16, lr=1e-3,
                warmup_epochs=0.5, patience=0, num_workers=0, accelerator="cpu", devices=1, progress=False)
    return TrainConfig(**{**base, **kwargs})


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    broken = tmp / "broken.png"
    broken.write_bytes(b"not a png")
    manifest = make_manifest(shared_data, tmp / "manifest.csv", broken=broken)
    result = train(config(manifest, tmp / "run"))
    return manifest, result


def test_training_loss_falls(run):
    _, result = run
    log = pd.read_csv(result.run_dir / "logs" / "metrics.csv")
    epoch_loss = log["train/loss_epoch"].dropna().to_numpy()
    assert len(epoch_loss) == 4
    assert epoch_loss[-1] < epoch_loss[0]


def test_run_folder_contents(run):
    _, result = run
    for name in ["config.json", "model.pt", "val_metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"]:
        assert (result.run_dir / name).is_file(), name
    assert "broken.png" in (result.run_dir / "bad_images.log").read_text()


def test_checkpoints_load_safely_to_identical_predictions(run, shared_data):
    manifest, result = run
    # Lightning's own checkpoint holds only plain types: no pickled code.
    lightning_ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert lightning_ckpt["ldcsf"]["thresholds"] == pytest.approx(result.thresholds)
    from_ckpt, from_pt = load_checkpoint(result.best_checkpoint), load_checkpoint(result.model_file)
    assert from_pt.meta.labels == LABELS and from_pt.meta.thresholds == pytest.approx(result.thresholds)
    assert from_pt.meta.mpp == pytest.approx(0.5 * 224 / 64)
    assert from_pt.meta.extra["training"]["config"]["model"] == "ldcsf_swin_micro"
    data = read_manifest(manifest, labels=LABELS, check_files=False).subset("val")
    dataset = ManifestDataset(data, build_transforms(64, from_pt.meta.mean, from_pt.meta.std, train=False))
    images = torch.stack([dataset[i][0] for i in range(4)])
    with torch.no_grad():
        assert torch.equal(from_ckpt.model(images), from_pt.model(images))


def test_evaluate_on_val_reproduces_training_metrics(run, tmp_path):
    manifest, result = run
    evaluation = evaluate(result.model_file, manifest, tmp_path, split="val", options=CPU)
    assert evaluation.report.summary["mAP"] == pytest.approx(result.val_metrics["summary"]["mAP"], abs=1e-6)
    assert evaluation.report.summary["hamming_loss"] == pytest.approx(result.val_metrics["summary"]["hamming_loss"], abs=1e-6)


def test_evaluate_writes_metrics_and_predictions(run, tmp_path):
    manifest, result = run
    evaluation = evaluate(result.best_checkpoint, manifest, tmp_path / "eval", split="test", options=CPU)
    metrics = pd.read_csv(tmp_path / "eval" / "metrics.csv")
    assert metrics["label"].tolist() == [*LABELS, "macro avg"]
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(predictions) == 12 == evaluation.report.summary["images"]
    assert ((predictions["tumor_prob"] >= result.thresholds[3]) == (predictions["tumor_pred"] == 1)).all()
    assert predictions["necrosis_true"].isna().any()  # blanks stay blank
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_predict_lists_unreadable_images_and_goes_on(run, shared_data, tmp_path):
    _, result = run
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    tiles = sorted((shared_data / "nct_crc").iterdir())[:3]
    frame = predict_images([*tiles, broken], result.model_file, out=tmp_path / "preds.csv", options=CPU)
    written = pd.read_csv(tmp_path / "preds.csv", keep_default_na=False)
    assert len(written) == 4 and list(frame.columns) == list(written.columns)
    assert "unreadable image" in written.loc[3, "error"] and written.loc[3, "tumor_prob"] == ""
    probs = written.loc[:2, [f"{lab}_prob" for lab in LABELS]].astype(float).to_numpy()
    assert ((probs > 0) & (probs < 1)).all()
    # No area head, no area columns (ldcsf_swin_micro predicts presence only).
    assert not any(column.endswith("_area") for column in written.columns) and "stroma_fraction" not in written


def test_resume_continues_from_last_checkpoint(run, tmp_path):
    manifest, result = run
    run_dir = tmp_path / "run"
    shutil.copytree(result.run_dir, run_dir)
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    with pytest.raises(ValueError, match="--resume"):
        train(config(manifest, run_dir))
    train(config(manifest, run_dir, epochs=5, resume=True))
    after = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (before["epoch"], after["epoch"]) == (3, 4)
    assert after["global_step"] == before["global_step"] + before["global_step"] // 4


def test_label_mismatch_is_one_clear_error(run, tmp_path):
    manifest, result = run
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False).rename(columns={"tumor": "tumour"})
    frame.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match=r"checkpoint labels .* differ"):
        evaluate(result.model_file, tmp_path / "other.csv", tmp_path / "eval", options=CPU)
    run_dir = tmp_path / "run"
    shutil.copytree(result.run_dir, run_dir)
    with pytest.raises(ValueError, match=r"checkpoint labels .* differ"):
        train(config(manifest, run_dir, labels=["stroma", "tumor"], resume=True))


def test_strict_stops_on_an_unreadable_image(run, tmp_path):
    manifest, _ = run
    with pytest.raises(ValueError, match="unreadable"):
        train(config(manifest, tmp_path / "strict", strict=True))
