"""benchmarks/viewer_load.py drives a real `ldcsf view` process within its bounds and writes the docs' table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_viewer_load_benchmark_is_bounded_and_publishes_p99_and_memory(shared_data, tmp_path):
    out = tmp_path / "viewer_load"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "viewer_load.py"), "--side", "1024",
                           "--clients", "4", "--requests", "120", "--seconds", "30", "--limit-tiles", "20",
                           "--work", str(tmp_path / "work"), "--data", str(shared_data), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.with_suffix(".json").read_text())["row"]
    assert row["errors"] == 0 and 120 <= row["answered"] < 120 + 4  # stops at the bound (each client ends its request)
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] and row["peak_rss_mb"] > 50
    assert len(row["load_average_before"]) == 3
    assert "viewer_load.py --side 1024" in out.with_suffix(".md").read_text()
