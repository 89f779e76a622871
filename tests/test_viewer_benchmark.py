"""benchmarks/viewer.py runs end to end on small slides and writes the table the docs quote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_viewer_benchmark_on_small_slides(shared_data, tmp_path):
    out = tmp_path / "viewer"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "viewer.py"), "--sizes", "512", "1024",
                           "--limit-tiles", "20", "--work", str(tmp_path / "work"), "--data", str(shared_data),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["side"] for r in rows] == [512, 1024]
    for row in rows:
        assert row["dimensions"] == [row["side"], row["side"]]
        # every tile of every level: 1024² px in 254 px tiles is 5 x 5 at full resolution
        assert row["slide_tiles"] > (row["side"] // 254) ** 2 and row["tiles_per_s"] > 0
        assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 0
    assert rows[0]["peak_vs_smallest"] == 1.0
    assert "viewer.py --sizes 512 1024" in out.with_suffix(".md").read_text()
