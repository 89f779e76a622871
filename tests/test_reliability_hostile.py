"""Hostile inputs from a second battery: odd file names, wrong µm/px, a viewer reached by another
Host, a scheduler's SIGTERM, damaged records, too few tiles, folders and loops among the slides,
damaged JPEG tiles, many missing slides (docs/reliability.md). Each test failed before its fix.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from ldcsf.cli.main import main
from ldcsf.inference import SlideSettings, run_cohort
from ldcsf.utils.paths import name_from_printable, printable_name
from ldcsf.viewer import OutputFolder
from test_reliability_failures import SRC, board, cli, micro_checkpoint
from viewer_support import running_server

SETTINGS = SlideSettings(batch_size=4, progress=False)
CMU = "slides/CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """64 px input at 2 µm/px: 256 level-0 px tiles on a 0.5 µm/px slide."""
    return micro_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.pt")


@pytest.fixture(scope="module")
def board_rgb(shared_data) -> np.ndarray:
    """512 x 512 px of real stroma and tumour (NCT-CRC tiles), a 2 x 2 grid of 256 px tiles."""
    nct = shared_data / "nct_crc"
    stroma = np.asarray(Image.open(nct / "STR-TCGA-HGDYLEWM.png").convert("RGB"))
    tumor = np.asarray(Image.open(nct / "TUM-TCGA-DRHQMTQA.png").convert("RGB"))
    pad = lambda a: np.pad(a, ((0, 32), (0, 32), (0, 0)), mode="reflect")  # noqa: E731 - 224 -> 256 px
    top = np.concatenate([pad(stroma), pad(tumor)], 1)
    return np.concatenate([top, top[:, ::-1]], 0)


# -- 1. a name that is not UTF-8 ---------------------------------------------------------------------
def test_a_name_that_is_not_utf8_works_and_never_poisons_the_folder(board_rgb, checkpoint, tmp_path):
    latin1 = os.fsdecode(b"caf\xe9")  # what Python makes of Latin-1 bytes in a name
    assert printable_name(latin1 + ".tif") == "caf\\xe9.tif" and name_from_printable("caf\\xe9.tif") == latin1 + ".tif"
    folder = tmp_path / "in"
    board(folder, latin1 + ".tif", board_rgb)
    board(folder, "zeta.tif", board_rgb)
    out = tmp_path / "out"
    table = run_cohort([folder], checkpoint, out, SETTINGS).set_index("slide_id")
    assert table["status"].tolist() == ["ok", "ok"], table["error"].tolist()
    assert table.loc["caf_xe9", "path"].endswith("caf\\xe9.tif")
    cohort = pd.read_csv(out / "cohort.csv")  # written, UTF-8, both slides
    assert sorted(cohort["slide_id"]) == ["caf_xe9", "zeta"]
    # A record an older run left with the raw name never stops a later, clean run.
    (out / "old").mkdir()
    (out / "old" / "failed.json").write_text(json.dumps({"slide_id": "old", "path": latin1, "status": "failed",
                                                         "error": latin1}), encoding="utf-8")
    assert cli("slide", str(folder / "zeta.tif"), "--checkpoint", str(checkpoint), "--out", str(out)) == 0
    assert "caf\\xe9" in (out / "cohort.csv").read_text(encoding="utf-8")
    # The viewer finds the slide file from its printable record.
    entry = OutputFolder(out).entries["caf_xe9"]
    assert entry.slide_file is not None and entry.slide_file.name == latin1 + ".tif"


# -- 4. SIGTERM to the whole process group ----------------------------------------------------------
def test_sigterm_to_the_process_group_with_reader_workers_stops_cleanly(shared_data, tmp_path):
    ckpt = micro_checkpoint(tmp_path / "fine.pt", mpp=0.5)  # ~600 tiles of 64 px on the CMU slide
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "ldcsf.cli.main", "slide", str(shared_data / CMU), "--checkpoint", str(ckpt),
            "--out", str(out), "--batch-size", "4", "--num-workers", "2", "--threads", "1", "--limit-tiles", "200",
            "--no-progress"]
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    parts = out / "CMU-1-Small-Region" / ".parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.npz")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGTERM)  # what `timeout` and `scancel` do: every process of the group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "ldcsf slide: stopped by SIGTERM" in err and "killed by signal" not in err


# -- 6. formula-guarded slide ids ------------------------------------------------------------------
def test_the_viewer_reads_the_formula_guard_back(board_rgb, checkpoint, tmp_path):
    out = tmp_path / "out"
    run_cohort([board(tmp_path / "in", "=HYPERLINK(1).tif", board_rgb)], checkpoint, out, SETTINGS)
    assert pd.read_csv(out / "cohort.csv")["slide_id"].tolist() == ["'=HYPERLINK(1)"]
    entries = OutputFolder(out).entries
    assert list(entries) == ["=HYPERLINK(1)"] and entries["=HYPERLINK(1)"].finished
