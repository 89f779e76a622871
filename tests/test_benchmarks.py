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


def bench_module(name: str):
    """A benchmark script imported as a module (its folder on sys.path only while importing)."""
    import importlib

    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


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
    # The predict phase saw every tile; the model alone was timed in the same process.
    assert run["predict_tiles"] == run["tiles"] and 0 < run["predict_seconds"] < run["seconds"]
    assert run["model_alone_img_s"] > 0 and 0 < run["model_busy"] <= 1
    slide = tmp_path / "slides" / "mosaic_448.tiff"
    assert slide.stat().st_size > 0
    assert "| 448² |" in out.with_suffix(".md").read_text()


@pytest.fixture(scope="module")
def accuracy_work(tmp_path_factory):
    """One work folder for the accuracy tests: the data set is built once."""
    return tmp_path_factory.mktemp("accuracy_work")


def test_accuracy_quick_is_resumable(tmp_path, shared_data, accuracy_work):
    from ldcsf.checkpoint import load_checkpoint

    work, out = accuracy_work, tmp_path / "accuracy"
    args = ["--quick", "--only", "ldcsf_swin_micro", "ldcsf_swin_micro w/o LDC", "--data", str(shared_data),
            "--work", str(work), "--out", str(out)]
    run_script("accuracy.py", *args, "--jobs", "2")  # the two runs side by side, one process each
    assert sorted(p.name for p in (work / "logs").glob("*.log")) == [
        "ldcsf_swin_micro__seed0.log", "ldcsf_swin_micro_wo_LDC__seed0.log"]
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["models"]) == {"ldcsf_swin_micro", "ldcsf_swin_micro w/o LDC"}
    assert "budget, the same for every model: 1 epoch(s) = 2 optimiser steps" in out.with_suffix(".md").read_text()
    # The ablation is trained through model arguments and reloads as itself.
    ablated = load_checkpoint(work / "runs" / "ldcsf_swin_micro_wo_LDC" / "seed0" / "model.pt")
    assert ablated.meta.model_name == "ldcsf_swin_micro" and ablated.model.ldc is None
    for model in result["models"].values():
        assert model["labels"] == ["stroma", "necrosis", "non_tumor", "tumor"]
        assert all(0 <= v <= 1 for v in model["summary"]["mAP"] if v is not None)
    assert out.with_suffix(".png").stat().st_size > 0
    assert "## Per-label accuracy" in out.with_suffix(".md").read_text()
    saved = sorted((work / "results").glob("*.json"))
    assert len(saved) == 2
    stamps = [p.stat().st_mtime_ns for p in saved]
    run_script("accuracy.py", *args, "--jobs", "1")  # rerun: every (model, seed) is done, nothing is retrained
    assert [p.stat().st_mtime_ns for p in saved] == stamps
    # Results of another budget are never mixed in.
    proc = subprocess.run([sys.executable, str(BENCH / "accuracy.py"), *args, "--lr", "1e-3"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == 1 and "made with another budget: lr 0.0003 (now 0.001)" in proc.stderr


def test_accuracy_estimate_projects_every_model(tmp_path, shared_data, accuracy_work):
    out = tmp_path / "accuracy"
    run_script("accuracy.py", "--quick", "--estimate", "--estimate-repeats", "1", "--data", str(shared_data),
               "--work", str(accuracy_work), "--out", str(out))
    est = json.loads(out.with_name("accuracy_estimate.json").read_text())
    assert set(est["runs"]) == {"ldcsf_swin_micro", "swin_micro", "ldcsf_swin_micro w/o LDC"}
    assert est["steps"] == 2 and est["split_sizes"] == {"train": 24, "val": 24, "test": 24}
    for run in est["runs"].values():
        assert run["step_s"] > 0 and run["run_s"] == pytest.approx(run["loading_s"] + run["model_s"])
    low, high = est["total_2_cores_s"]
    assert low < high == pytest.approx(est["total_s"])
    longest = max(run["run_s"] for run in est["runs"].values())
    assert est["total_jobs_s"] == pytest.approx(max(est["total_s"] / est["jobs"], longest))
    assert "Projected:" in out.with_name("accuracy_estimate.md").read_text()


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


def test_tsr_agreement_cross_validated_scores_each_image_with_a_model_that_never_saw_it(tmp_path, shared_data):
    import pandas as pd

    work, out = tmp_path / "work", tmp_path / "tsr"
    args = ["--quick", "--folds", "2", "--limit", "2", "--threads", "1", "--data", str(shared_data),
            "--work", str(work), "--out", str(out)]
    run_script("tsr_agreement.py", *args)
    result = json.loads(out.with_suffix(".json").read_text())
    folds = {r["image"]: r["fold"] for r in result["images"]}
    assert set(folds) == {"00.png", "01.png"} and set(folds.values()) == {0, 1}
    assert result["leakage"].startswith("no:") and result["folds"] == 2
    for image, fold in folds.items():
        group = "wsss4luad:val-" + image.removesuffix(".png")
        trained_on = pd.read_csv(next(work.glob(f"cv_*/fold{fold}/manifest.csv")))
        assert group not in set(trained_on["group"])  # the fold's own tiles were removed
        full = pd.read_csv(work / "pancancer" / "manifest_absolute.csv")
        assert group in set(full["group"])  # ... from a set that holds them
    assert result["stats"]["n"] == 2 and out.with_suffix(".png").stat().st_size > 0
    assert result["tile_stats"]["n"] > 0  # held-out mask tiles scored too
    assert "## Mask tiles" in out.with_suffix(".md").read_text()

    finished = sorted(work.glob("cv_*/fold*/predictions_*.json")) + sorted(work.glob("cv_*/fold*/run/model.pt"))
    assert len(finished) == 4
    stamps = [p.stat().st_mtime_ns for p in finished]
    run_script("tsr_agreement.py", *args)  # rerun: both folds are done, nothing is retrained or rescored
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    assert json.loads(out.with_suffix(".json").read_text())["images"] == result["images"]


def test_loso_quick_trains_without_the_source_and_scores_only_it(tmp_path, shared_data):
    import pandas as pd

    work, out = tmp_path / "work", tmp_path / "loso"
    run_script("loso.py", "--quick", "--recipes", "lite0_area", "--sources", "nct_crc", "--threads", "1",
               "--data", str(shared_data), "--work", str(work), "--out", str(out), timeout=400)
    result = json.loads(out.with_suffix(".json").read_text())
    (row,) = result["results"]
    assert row["recipe"] == "lite0_area" and row["source"] == "nct_crc"
    trained_on = pd.read_csv(work / "lite0_area" / "nct_crc" / "manifest.csv")
    assert "nct_crc" not in set(trained_on["dataset"]) and "test" not in set(trained_on["split"])
    full = pd.read_csv(work / "pancancer" / "manifest_quick.csv")
    assert row["images"] == int(full["dataset"].eq("nct_crc").sum()) > 0
    per_label = row["metrics"]["per_label"]
    assert 0 <= per_label["necrosis"]["accuracy"] <= 1 and 0 <= row["called_stroma"] <= 1
    assert "| nct_crc | lite0_area |" in out.with_suffix(".md").read_text()

    # The same fold model, its thresholds re-tuned by each rule on its validation split.
    rules = tmp_path / "rules"
    run_script("threshold_rules.py", str(work), "--quick", "--manifest", str(work / "pancancer" / "manifest_quick.csv"),
               "--out", str(rules))
    scored = json.loads(rules.with_suffix(".json").read_text())["results"]
    assert [r["rule"] for r in scored] == ["f1", "youden", "fixed 0.5"]
    assert all(r["source"] == "nct_crc" and 0 <= r["called_stroma"] <= 1 for r in scored)
    assert scored[2]["thresholds"] == [0.5] * 4 and set(scored[0]["accuracy"]) <= set(per_label)


def test_revisions_times_ldcsf_slide_from_an_earlier_revision(tmp_path, shared_data):
    import torch

    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint

    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("revisions.py compares git revisions: this checkout is not a git repository")
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", img_size=64)
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, CheckpointMeta.for_model(model, mpp=2.0))
    out = tmp_path / "revisions"
    run_script("revisions.py", "HEAD", "--slide", str(shared_data / "slides" / "CMU-1-Small-Region.svs"),
               "--checkpoint", str(checkpoint), "--repeats", "1", "--out", str(out), timeout=400)
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["times"]) == {"HEAD", "this checkout"}
    assert all(len(t) == 1 and t[0] > 0 for t in result["times"].values()) and result["speed_ratio"] > 0
    worktrees = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert "ldcsf-revision-" not in worktrees  # the temporary checkout is removed


def test_peers_quick_without_tiatoolbox_says_so(tmp_path, shared_data):
    out = tmp_path / "peers"
    proc = run_script("peers.py", "--quick", "--peers-python", str(tmp_path / "no-such-python"), "--data", str(shared_data),
                      "--slide-dir", str(tmp_path / "slides"), "--out", str(out), timeout=400)
    assert "tiatoolbox skipped: not installed" in proc.stderr
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["tools"] == ["ldcsf", "naive"] and result["status"]["tiatoolbox"].startswith("not installed")
    rows = {r["tool"]: r for r in result["summary"]}
    # 896 px mosaic at 0.5 µm/px, 224 px level-0 tiles: the naive loop predicts the whole 4 x 4 grid.
    assert rows["naive"]["tiles"] == 16 and 0 < rows["ldcsf"]["tiles"] <= 16
    for row in rows.values():
        assert row["seconds"] > 0 and row["tiles_per_s"] > 0 and row["peak_rss_mb"] > 100  # torch alone is more
    # Same weights, same tiles: the tools agree tile for tile.
    assert rows["naive"]["common_tiles"] == rows["ldcsf"]["tiles"]
    assert rows["naive"]["max_abs_diff"] <= result["agreement_tolerance"] and rows["naive"]["decisions_agree"] == 1.0
    speedup = result["speedup_vs_fastest_peer"]
    assert speedup["peer"] == "naive" and speedup["ratio"] == pytest.approx(
        rows["ldcsf"]["tiles_per_s"] / rows["naive"]["tiles_per_s"])
    by_slide = speedup["seconds_ratio_by_slide"]["mosaic_896.tiff"]
    assert by_slide["seconds_ratio"] == pytest.approx(rows["naive"]["seconds"] / rows["ldcsf"]["seconds"])
    markdown = out.with_suffix(".md").read_text()
    assert "peers.py --quick" in markdown and "## Not measured" in markdown and "slideflow" in markdown


def test_runtimes_quick_checks_every_runtime_against_eager(tmp_path):
    pytest.importorskip("onnxruntime", reason="the runtimes extra is not installed")
    pytest.importorskip("openvino", reason="the runtimes extra is not installed")
    out = tmp_path / "runtimes"
    run_script("runtimes.py", "--quick", "--threads", "1", "--no-progress", "--out", str(out))
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["runtime"]: r for r in result["rows"]}
    assert {"eager", "channels-last", "onnxruntime", "openvino"} <= set(rows)
    assert ("bf16-autocast" in rows) == result["native_bf16"]
    for row in rows.values():
        assert row["model"] == "ldcsf_swin_micro" and row["size"] == 64 and row["img_s"] > 0
        assert row["vs_eager"] == pytest.approx(row["img_s"] / rows["eager"]["img_s"])
        assert row["share_of_matmul"] == pytest.approx(row["achieved_gflop_s"] / row["matmul_gflop_s"])
    # fp32 engines are exact; the exported ones were checked at export too.
    for name in ("eager", "onnxruntime", "openvino"):
        assert rows[name]["exact"] and rows[name]["max_prob_diff"] <= result["tolerance"]
    fastest = result["fastest_exact"]["ldcsf_swin_micro"]
    assert rows[fastest]["exact"] and all(rows[fastest]["img_s"] >= r["img_s"] for r in rows.values() if r["exact"])
    assert "runtimes.py --quick" in out.with_suffix(".md").read_text()


def test_shipped_versions_quick_times_two_shipped_folders_on_the_same_tiles(tmp_path, shared_data):
    """The committed shipped model against the working tree's (the same files here): equal tiles, a ratio near 1."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the previous shipped model is read from git")
    out = tmp_path / "versions"
    run_script("shipped_versions.py", "--quick", "--previous", "HEAD", "--out", str(out), timeout=400)
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["revision"] == "HEAD" and result["slide"] == "CMU-1-Small-Region.svs"
    (previous, previous_tiles), (current, current_tiles) = result["tiles"].items()
    assert previous.endswith("(previous)") and current.endswith("(this tree)")
    assert previous_tiles == current_tiles == 8
    assert all(len(seconds) == 1 and seconds[0] > 0 for seconds in result["seconds"].values())
    assert "| model | tiles | seconds per round |" in out.with_suffix(".md").read_text()
