"""The benchmark scripts run end to end on tiny settings and write what the docs quote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run_script(name: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    # One thread: test workers run side by side on a small machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
    return proc


def test_speed_quick_compares_ldcsf_with_swin(tmp_path):
    out = tmp_path / "speed"
    proc = run_script("speed.py", "--quick", "--threads", "1", "--no-progress", "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"ldcsf_swin_micro", "swin_micro", "resnet18"}
    for row in rows.values():
        assert row["size"] == 64 and row["infer_img_s"] > 0 and row["train_img_s"] > 0
        assert row["p90_ms"] >= row["p50_ms"] > 0
        assert row["gflops"] > 0 and 0 < row["share_of_matmul"]
    ldcsf, swin = rows["ldcsf_swin_micro"], rows["swin_micro"]
    assert ldcsf["infer_vs_swin"] == pytest.approx(ldcsf["infer_img_s"] / swin["infer_img_s"])
    assert ldcsf["gflops"] > swin["gflops"]  # LDC, FR and the ResNet stage add work on top of Swin
    markdown = out.with_suffix(".md").read_text()
    assert "speed.py --quick" in markdown and "infer vs Swin" in markdown
    assert "| ldcsf_swin_micro | 64px |" in proc.stdout


def test_speed_slide_pipeline_on_a_real_mosaic(tmp_path, shared_data):
    out = tmp_path / "speed"
    run_script("speed.py", "--quick", "--models", "ldcsf_swin_micro", "--no-train", "--threads", "1", "--no-progress",
               "--data", str(shared_data), "--slide-sizes", "448", "--slide-dir", str(tmp_path / "slides"),
               "--out", str(out))
    # One small slide keeps the test short; the two-size memory comparison is the same code path.
    pipe = json.loads(out.with_suffix(".json").read_text())["pipeline"]
    assert "skipped" not in pipe, pipe
    (run,) = pipe["runs"]
    assert run["side"] == 448 and run["tiles"] > 0 and run["tiles_per_s"] > 0
    assert run["peak_rss_mb"] > 100  # torch alone is more than that: the measurement is the worker's
    slide = tmp_path / "slides" / "mosaic_448.tiff"
    assert slide.stat().st_size > 0
    assert "| 448² |" in out.with_suffix(".md").read_text()


def test_accuracy_quick_is_resumable(tmp_path, shared_data):
    work, out = tmp_path / "work", tmp_path / "accuracy"
    args = ["--quick", "--only", "ldcsf_swin_micro", "swin_micro", "--data", str(shared_data),
            "--work", str(work), "--out", str(out)]
    run_script("accuracy.py", *args)
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["models"]) == {"ldcsf_swin_micro", "swin_micro"}
    for model in result["models"].values():
        assert model["labels"] == ["stroma", "necrosis", "non_tumor", "tumor"]
        assert all(0 <= v <= 1 for v in model["summary"]["mAP"] if v is not None)
    assert out.with_suffix(".png").stat().st_size > 0
    assert "## Per-label accuracy" in out.with_suffix(".md").read_text()
    saved = sorted((work / "results").glob("*.json"))
    assert len(saved) == 2
    stamps = [p.stat().st_mtime_ns for p in saved]
    run_script("accuracy.py", *args)  # rerun: every (model, seed) is done, nothing is retrained
    assert [p.stat().st_mtime_ns for p in saved] == stamps


def test_tsr_agreement_against_pixel_masks(tmp_path, shared_data):
    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint

    model = create_model("ldcsf_swin_micro")
    checkpoint = save_checkpoint(tmp_path / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.75))
    out = tmp_path / "tsr"
    run_script("tsr_agreement.py", "--checkpoint", str(checkpoint), "--limit", "2", "--data", str(shared_data),
               "--work", str(tmp_path / "work"), "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["image"] for r in result["images"]] == ["00.png", "01.png"]
    scored = [r for r in result["images"] if r["pred"] is not None and r["true"] is not None]
    assert result["stats"]["n"] == len(scored) >= 2
    assert all(0 <= r["pred"] <= 1 and 0 <= r["true"] <= 1 for r in scored)
    assert result["stats"]["mae"] == pytest.approx(sum(abs(r["pred"] - r["true"]) for r in scored) / len(scored))
    assert out.with_suffix(".png").stat().st_size > 0
    assert "unknown" in result["leakage"]  # a bare checkpoint does not say what it was trained on
