"""benchmarks/tile_reads.py runs end to end on tiny settings and writes what the docs quote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_tile_reads_quick_times_the_dataset_and_the_pillow_path(tmp_path, shared_data):
    out = tmp_path / "tile_reads"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tile_reads.py"), "--quick", "--no-progress",
                           "--data", str(shared_data), "--slide-dir", str(tmp_path / "slides"), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    cases = {c["case"]: c for c in result["cases"]}
    assert len(cases) == 4 and any("CMU" in name for name in cases)
    for case in cases.values():
        assert set(case["ms_per_tile"]) == {"dataset", "pillow"} and min(case["ms_per_tile"].values()) > 0
        assert all(len(t["seconds"]) == 2 for t in case["timings"].values())
    markdown = out.with_suffix(".md").read_text()
    assert "tile_reads.py --quick" in markdown and "| Pillow / now |" in markdown
