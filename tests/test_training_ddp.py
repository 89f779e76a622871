"""Two-process DDP training on CPU (gloo), started through the `ldcsf train` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from ldcsf.checkpoint import load_checkpoint

from test_training_run import LABELS, make_manifest


def test_ddp_two_processes_on_cpu(shared_data, tmp_path):
    manifest = make_manifest(shared_data, tmp_path / "manifest.csv")
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "ldcsf.cli.main", "train", "--data", str(manifest), "--model", "ldcsf_swin_micro",
        "--out", str(run_dir), "--epochs", "1", "--batch-size", "8", "--max-steps", "2",
        "--limit-train-batches", "2", "--limit-val-batches", "1", "--accelerator", "cpu", "--devices", "2",
        "--strategy", "ddp", "--num-workers", "0", "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    loaded = load_checkpoint(run_dir / "model.pt")
    assert loaded.meta.labels == LABELS
    # both processes' validation images were gathered: 2 processes x 1 batch of 8, 12 val images
    assert loaded.meta.extra["training"]["split_sizes"]["val"] == 12
    assert json.loads((run_dir / "val_metrics.json").read_text())["summary"]["images"] == 12
