"""Progress in a log: whole lines (what, how far, rate, time left), never a bar's carriage returns."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ldcsf.utils import progress
from ldcsf.utils.progress import LineTqdm, progress_mode

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def test_a_line_bar_writes_one_line_at_its_end_when_it_is_quick():
    out = io.StringIO()
    for _ in LineTqdm(range(5), desc="scoring", unit="img", file=out):
        pass
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 1
    assert lines[0].startswith("scoring: 5/5 img (100%), ") and "img/s" in lines[0] and "elapsed 00:00" in lines[0]


def test_a_line_bar_says_how_far_and_time_left_every_interval(monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    out = io.StringIO()
    with LineTqdm(total=4, desc="Epoch 3", unit="it", file=out, mininterval=0, miniters=1) as bar:
        for _ in range(4):
            bar.update(1)
            bar.set_postfix({"val/mAP": 0.9}, refresh=False)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"Epoch 3: {n}/4 it" for n in (1, 2, 3, 4)]
    assert all(" left" in line for line in lines[:-1]) and " left" not in lines[-1]
    assert lines[-1].endswith("val/mAP=0.9")


def test_the_mode_follows_the_terminal_unless_forced(monkeypatch):
    monkeypatch.delenv("LDCSF_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert progress_mode() == "lines" and isinstance(progress.tqdm(range(2)), LineTqdm)
    monkeypatch.setenv("LDCSF_PROGRESS", "bars")
    assert progress_mode() == "bars" and not isinstance(progress.tqdm(range(2), disable=True), LineTqdm)
    monkeypatch.setenv("LDCSF_PROGRESS", "dots")
    with pytest.raises(ValueError, match="LDCSF_PROGRESS='dots': expected one of bars, lines"):
        progress_mode()


def small_manifest(shared_data: Path, out: Path) -> Path:
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = [source[source["path"].str.startswith(p + "/")].sort_values("path").iloc[:8] for p in ("nct_crc", "oral")]
    frame = pd.concat(rows)[["path", *LABELS]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = np.array(["train", "train", "train", "val"])[np.arange(len(frame)) % 4]
    frame.to_csv(out, index=False)
    return out


def ldcsf(*args: str) -> subprocess.CompletedProcess:
    """`ldcsf ARGS` with stdout and stderr piped, as in CI or `> log 2>&1`."""
    env = {k: v for k, v in os.environ.items() if k != "LDCSF_PROGRESS"}
    return subprocess.run([sys.executable, "-m", "ldcsf.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_piped_training_and_prediction_write_lines_without_carriage_returns(shared_data, tmp_path):
    manifest = small_manifest(shared_data, tmp_path / "manifest.csv")
    trained = ldcsf("train", "--data", str(manifest), "--model", "ldcsf_swin_micro", "--epochs", "1",
                    "--batch-size", "4", "--patience", "0", "--accelerator", "cpu", "--num-workers", "0",
                    "--out", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr[-2000:]
    log = trained.stdout + trained.stderr
    assert "\r" not in log and "\x1b[" not in log
    assert any(line.startswith("Epoch 0: 3/3 it (100%), ") and "val/mAP=" in line for line in log.splitlines()), log

    predicted = ldcsf("predict", str(shared_data / "nct_crc"), "--checkpoint", str(tmp_path / "run" / "model.pt"),
                      "--accelerator", "cpu", "--num-workers", "0", "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    log = predicted.stdout + predicted.stderr
    assert "\r" not in log and any(line.startswith("Predicting DataLoader 0: ") for line in log.splitlines()), log
