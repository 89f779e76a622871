"""Model arguments in training: an ablated model trains, is recorded, and reloads as itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf.checkpoint import load_checkpoint
from ldcsf.cli.main import main
from ldcsf.training import TrainConfig, train

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def small_manifest(shared_data: Path, out: Path, n: int = 15) -> Path:
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = source[source["path"].str.startswith("nct_crc/")].sort_values("path")
    frame = rows.iloc[np.linspace(0, len(rows) - 1, n).astype(int)][["path", *LABELS]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = np.array(["train", "train", "train", "val", "test"])[np.arange(n) % 5]
    frame.to_csv(out, index=False)
    return out


@pytest.fixture(scope="module")
def ablated_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model_args")
    manifest = small_manifest(shared_data, tmp / "manifest.csv")
    config = TrainConfig(data=str(manifest), model="ldcsf_swin_micro", model_kwargs={"use_ldc": False},
                         out=str(tmp / "run"), epochs=1, batch_size=4, patience=0, num_workers=0,
                         accelerator="cpu", devices=1, progress=False)
    return manifest, train(config)


def test_ablated_model_reloads_without_the_module(ablated_run):
    _, result = ablated_run
    recorded = json.loads((result.run_dir / "config.json").read_text())["config"]["model_kwargs"]
    assert recorded == {"use_ldc": False}
    from_pt, from_ckpt = load_checkpoint(result.model_file), load_checkpoint(result.best_checkpoint)
    for loaded in (from_pt, from_ckpt):
        assert loaded.meta.model_name == "ldcsf_swin_micro" and loaded.meta.model_kwargs["use_ldc"] is False
        assert loaded.model.ldc is None and loaded.model.fr is not None
        assert not any(k.startswith("ldc.") for k in loaded.model.state_dict())
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(from_pt.model(images), from_ckpt.model(images))


def test_resume_with_other_model_arguments_is_refused(ablated_run):
    manifest, result = ablated_run
    config = TrainConfig(data=str(manifest), model="ldcsf_swin_micro", out=str(result.run_dir), resume=True,
                         epochs=2, num_workers=0, accelerator="cpu", devices=1, progress=False)
    with pytest.raises(ValueError, match="same --model and --model-arg"):
        train(config)


@pytest.mark.parametrize("model_arg, message", [
    ("use_ldc", "--model-arg 'use_ldc': expected KEY=VALUE"),
    ("no_such_arg=1", "model ldcsf_swin_micro has no argument 'no_such_arg'"),
    ("labels=[1]", "model ldcsf_swin_micro: labels cannot be a model argument"),
])
def test_bad_model_arg_is_one_clear_line(model_arg, message, shared_data, tmp_path, capsys):
    manifest = small_manifest(shared_data, tmp_path / "manifest.csv")
    code = main(["train", "--data", str(manifest), "--model", "ldcsf_swin_micro", "--out", str(tmp_path / "run"),
                 "--model-arg", model_arg, "--accelerator", "cpu", "--num-workers", "0", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("ldcsf train: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
