"""Slide outputs as a list of writers: the list drives tsr.json, `--outputs` chooses among them,
a rerun adds outputs without predicting again, and the viewer and cohort table cope with a slide
that lacks some."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.analysis.slide_analysis import analyse_slide
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.export import slide_writers
from ldcsf.export.slide_outputs import write_slide_outputs
from ldcsf.export.slide_writers import SlideOutput, chosen_outputs, output_names
from ldcsf.viewer.outputs import OutputFolder
from ldcsf.viewer.server import Viewer
from ldcsf.wholeslide import SlideSettings, run_cohort
from tile_grids import tile_table_from_grids

CMU = "slides/CMU-1-Small-Region.svs"
CMU_ID = "CMU-1-Small-Region"
LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def analysed():
    """A small analysed slide (6 x 8 tiles) and its thumbnail."""
    rng = np.random.default_rng(3)
    probs = {name: rng.random((6, 8)) for name in LABELS}
    tiles = tile_table_from_grids(probs, tile_size=224, mpp=0.5)
    analysis = analyse_slide(tiles, LABELS, [0.5] * 4, 0.5, (8 * 224, 6 * 224), slide_id="s")
    return analysis, Image.fromarray(rng.integers(150, 250, (84, 112, 3), dtype=np.uint8))


def write(out_dir, outputs=None, **kwargs):
    analysis, thumbnail = analysed()
    return write_slide_outputs(out_dir, analysis, slide_id="s", slide_path="/slides/s.svs", thumbnail=thumbnail,
                               thumbnail_downsample=16.0, settings={}, outputs=outputs, **kwargs)


def test_a_writer_added_to_the_list_is_written_and_listed(tmp_path, monkeypatch):
    def write_note(slide):
        (slide.out_dir / "note.txt").write_text(f"{slide.slide_id}: {slide.analysis.tsr.n_tiles} tiles")
        return ["note.txt"]

    note = SlideOutput("note", "note.txt", write_note)
    monkeypatch.setattr(slide_writers, "SLIDE_OUTPUTS", [*slide_writers.SLIDE_OUTPUTS[:-1], note,
                                                         slide_writers.SLIDE_OUTPUTS[-1]])
    write(tmp_path / "all")
    record = json.loads((tmp_path / "all" / "tsr.json").read_text())
    assert record["files"][0] == "tsr.json" and record["files"][-1] == "note.txt"
    assert (tmp_path / "all" / "note.txt").read_text() == "s: 48 tiles"
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(record["files"])
    assert "outputs" not in record  # all chosen: nothing more recorded than before the list existed
    assert "note" in output_names()

    write(tmp_path / "without", outputs=[n for n in output_names() if n != "note"])
    record = json.loads((tmp_path / "without" / "tsr.json").read_text())
    assert "note.txt" not in record["files"] and not (tmp_path / "without" / "note.txt").exists()
    assert record["outputs"] == ["parquet", "csv", "overlay", "heatmaps", "geojson", "report", "subtile-maps"]


def test_unknown_output_names_are_refused_in_one_line(shared_data, tmp_path, capsys):
    with pytest.raises(ValueError) as err:
        chosen_outputs(["parquet", "pictures"])
    message = str(err.value)
    assert "\n" not in message and "'pictures'" in message and ", ".join(output_names()) in message

    from ldcsf.cli.main import main

    code = main(["slide", str(shared_data / CMU), "--checkpoint", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "out"), "--outputs", "report", "maps"])
    error = capsys.readouterr().err.strip()
    assert code == 1 and error.startswith("ldcsf slide: error: --outputs: no output named 'maps'"), error
    assert len(error.splitlines()) == 1 and not (tmp_path / "out").exists()  # refused before any slide


def test_no_pictures_is_the_outputs_less_the_pictures(tmp_path):
    from ldcsf.cli.main import build_parser
    from ldcsf.cli.slide import slide_settings

    def parsed(*flags):
        return slide_settings(build_parser().parse_args(["slide", "a.svs", "--out", "o", *flags]))

    assert parsed().outputs is None
    assert parsed("--no-pictures").outputs == ["parquet", "csv", "geojson", "report", "subtile-maps"]
    assert parsed("--outputs", "report", "overlay", "--no-pictures").outputs == ["report"]


def test_viewer_notes_a_slide_written_without_its_tile_table(tmp_path):
    write(tmp_path / "s", outputs=["report"])
    viewer = Viewer(OutputFolder(tmp_path))
    info = viewer.slide_info("s")  # the slide file is gone too: both said, nothing raised
    assert "not written: the run's --outputs left out parquet" in info["results_error"]
    assert info["finished"] and info["labels"] == LABELS and "layers" not in info


class PredictedBatches(L.Callback):
    """Counts the batches the model predicts."""

    def __init__(self) -> None:
        self.batches = 0

    def on_predict_batch_end(self, *args, **kwargs) -> None:
        self.batches += 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A micro model at 2 µm/px with an area head: 256 level-0 px tiles on the CMU slide."""
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", img_size=64, area_head=True)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model, CheckpointMeta.for_model(model, mpp=2.0))


def test_outputs_subset_then_a_rerun_adds_outputs_without_predicting(shared_data, checkpoint, tmp_path):
    settings = dict(batch_size=4, num_workers=0, accelerator="cpu", devices=1, progress=False, limit_tiles=8)
    out, slide_dir = tmp_path / "out", tmp_path / "out" / CMU_ID
    first = PredictedBatches()
    table = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(**settings, outputs=["geojson", "parquet"]),
                       callbacks=[first])
    assert table["status"].tolist() == ["ok"] and first.batches == 2
    assert {p.name for p in slide_dir.iterdir()} == {"tsr.json", "tiles.parquet", "tiles.geojson", "inputs.json", ".parts", ".lock"}
    record = json.loads((slide_dir / "tsr.json").read_text())
    assert record["files"] == ["tsr.json", "tiles.parquet", "tiles.geojson"]
    assert record["outputs"] == ["parquet", "geojson"]
    cohort = pd.read_csv(out / "cohort.csv")  # the cohort table needs only tsr.json
    assert cohort["slide_id"].tolist() == [CMU_ID] and cohort["n_tiles"].tolist() == [8]
    tiles = pd.read_parquet(slide_dir / "tiles.parquet")

    # Fewer or the same outputs: skipped. More: added from the kept parts, the model never run.
    again = PredictedBatches()
    table = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(**settings, outputs=["parquet"]),
                       callbacks=[again])
    assert table["status"].tolist() == ["skipped"] and again.batches == 0
    table = run_cohort([shared_data / CMU], checkpoint, out,
                       SlideSettings(**settings, outputs=["overlay", "report", "subtile-maps"]), callbacks=[again])
    assert table["status"].tolist() == ["ok"] and again.batches == 0
    record = json.loads((slide_dir / "tsr.json").read_text())
    assert record["files"] == ["tsr.json", "tiles.parquet", "overlay.png", "tiles.geojson", "report.html",
                               "subtile_maps.npz"]
    assert record["cohort_row"]["stroma_fraction"] == cohort["stroma_fraction"].iloc[0]
    pd.testing.assert_frame_equal(pd.read_parquet(slide_dir / "tiles.parquet"), tiles, check_exact=True)
    assert (slide_dir / ".parts").is_dir()  # not every output yet

    # Everything: the rest added, the parts gone, tsr.json as a run of all outputs writes it.
    table = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(**settings), callbacks=[again])
    assert table["status"].tolist() == ["ok"] and again.batches == 0 and not (slide_dir / ".parts").exists()
    record = json.loads((slide_dir / "tsr.json").read_text())
    assert "outputs" not in record and len(record["files"]) == 7 + len(LABELS)
    assert all((slide_dir / name).is_file() for name in record["files"])


def test_folders_written_before_the_outputs_choice_keep_matching(tmp_path):
    from ldcsf.export.slide_writers import recorded_outputs
    from ldcsf.wholeslide.fingerprint import INPUTS_JSON, claim_output

    fingerprint = {"format": 1, "slide": {"name": "s.svs"}, "checkpoint": {"model_name": "m"}, "tiling": {"overlap": 0.0}}
    # --no-pictures used to be recorded with the inputs: such a finished folder is the same inputs now
    (tmp_path / INPUTS_JSON).write_text(json.dumps({**fingerprint, "tiling": {"overlap": 0.0, "pictures": False}}))
    assert claim_output(tmp_path, fingerprint, finished=True) is True
    plain = ["tsr.json", "tiles.parquet", "tiles.csv", "tiles.geojson", "report.html"]
    assert recorded_outputs({"files": plain}) == ["parquet", "csv", "geojson", "report", "subtile-maps"]
    assert recorded_outputs({"files": [*plain, "overlay.png"]}) == output_names()
    assert recorded_outputs({"files": plain, "outputs": ["report", "parquet"]}) == ["parquet", "report"]
