"""benchmarks/tsr_rater_agreement.py on the real WSSS4LUAD masks: the numbers docs/results.md quotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pingouin", reason="the study extra is not installed: pip install 'ldcsf[study]'")

from ldcsf.cli.main import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PREDICTIONS = REPO / "benchmarks" / "results" / "tsr_agreement_lite0_area.json"


def test_rater_agreement_on_the_masks_matches_the_cli_and_the_earlier_benchmark(shared_data, tmp_path, capsys):
    out, work = tmp_path / "rater", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tsr_rater_agreement.py"), "--data", str(shared_data),
                           "--predictions", str(PREDICTIONS), "--work", str(work), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(out.with_suffix(".json").read_text())["runs"][0]["agreement"]
    earlier = json.loads(PREDICTIONS.read_text())["stats"]
    # The same 29 images and predictions as tsr_agreement.py: its Spearman and bias, recomputed by other code.
    assert run["n"] == earlier["n"] == 29
    assert run["spearman"] == pytest.approx(earlier["spearman"], abs=1e-9)
    assert run["bias"] == pytest.approx(100 * earlier["bias"], abs=1e-6)
    assert -1 <= run["icc2_low"] < run["icc2"] < run["icc2_high"] <= 1
    assert out.with_suffix(".png").stat().st_size > 10_000
    # The command a user types gives the same figures on the cohort the script built.
    cohort = work / PREDICTIONS.stem
    assert main(["agreement", str(cohort), "--reference", str(cohort / "reference.csv"), "--score", "whole-slide",
                 "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "agreement.json").read_text())["pairs"][0]
    assert cli["icc2"] == pytest.approx(run["icc2"]) and cli["kappa_10pct_linear"] == pytest.approx(run["kappa_10pct_linear"])
