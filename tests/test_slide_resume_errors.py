"""Cohorts survive interruptions and bad slides: resume gives the uninterrupted result."""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.wsi import write_pyramidal_tiff

# 64 px input at 2 µm/px = 256 level-0 px on a 0.5 µm/px slide: 4 x 4 = 16 tiles on a 896 px board.
SETTINGS = SlideSettings(batch_size=4, progress=False)


class FaultAfterBatches(L.Callback):
    """Raises once, after `n` batches have been predicted (and written)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.fired = n, 0, False

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.seen += 1
        if self.seen == self.n and not self.fired:
            self.fired = True
            raise RuntimeError("injected fault")


class CountBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_predict_batch_end(self, *args, **kwargs):
        self.batches += 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = create_model("ldcsf_swin_micro")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.pt", model, CheckpointMeta.for_model(model, mpp=2.0))


@pytest.fixture(scope="module")
def slides(shared_data, tmp_path_factory):
    """Two 4 x 4 chessboards of real stroma/tumour tiles, as pyramidal TIFFs at 0.5 µm/px."""
    folder = tmp_path_factory.mktemp("slides")
    nct = shared_data / "nct_crc"
    stroma = [np.asarray(Image.open(nct / f).convert("RGB")) for f in ("STR-TCGA-HGDYLEWM.png", "STR-TCGA-IAATGHRG.png")]
    tumor = [np.asarray(Image.open(nct / f).convert("RGB")) for f in ("TUM-TCGA-DRHQMTQA.png", "TUM-TCGA-GALLTCWV.png")]
    paths = []
    for k, name in enumerate(("board_a", "board_b")):
        rows = [np.concatenate([(stroma if (r + c + k) % 2 == 0 else tumor)[c % 2] for c in range(4)], 1) for r in range(4)]
        paths.append(write_pyramidal_tiff(folder / f"{name}.tif", np.concatenate(rows, 0), mpp=0.5, tile_size=128))
    return paths


def tile_tables(out) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / name / "tiles.parquet") for name in ("board_a", "board_b")}


def test_interrupted_cohort_resumes_to_the_uninterrupted_result(slides, checkpoint, tmp_path):
    reference = run_cohort(slides, checkpoint, tmp_path / "reference", SETTINGS)
    assert reference["status"].tolist() == ["ok", "ok"]

    out = tmp_path / "interrupted"
    first = run_cohort(slides, checkpoint, out, SETTINGS, callbacks=[FaultAfterBatches(2)])
    # The fault stops board_a after 2 of its 4 batches; it is recorded and board_b still finishes.
    assert first["status"].tolist() == ["failed", "ok"]
    assert "injected fault" in first.loc[0, "error"]
    assert len(list((out / "board_a" / ".parts").glob("part-*.npz"))) == 2
    assert not (out / "board_a" / "tsr.json").exists()  # nothing partial looks complete
    assert pd.read_csv(out / "cohort.csv")["status"].tolist() == ["failed", "ok"]

    counter = CountBatches()
    second = run_cohort(slides, checkpoint, out, SETTINGS, callbacks=[counter])
    assert second["status"].tolist() == ["ok", "skipped"]
    assert counter.batches == 2  # only the batches the interrupted run had not finished
    for name, expected in tile_tables(tmp_path / "reference").items():
        got = tile_tables(out)[name]
        assert len(got) == 16
        pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-5)
    pd.testing.assert_frame_equal(
        second.drop(columns="status"), reference.drop(columns="status"), check_exact=False, atol=1e-5
    )


def test_changed_settings_do_not_reuse_old_batches(slides, checkpoint, tmp_path):
    out = tmp_path / "out"
    run_cohort(slides[:1], checkpoint, out, SETTINGS, callbacks=[FaultAfterBatches(1)])
    counter = CountBatches()
    table = run_cohort(slides[:1], checkpoint, out, SlideSettings(batch_size=4, min_tissue=0.5, progress=False),
                       callbacks=[counter])
    assert table["status"].tolist() == ["ok"] and counter.batches == 4  # all 16 tiles predicted again


def test_bad_slides_are_recorded_and_the_others_finish(shared_data, slides, checkpoint, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.svs").write_bytes((shared_data / "slides/CMU-1-Small-Region.svs").read_bytes()[:500_000])
    (bad / "notes.svs").write_text("this is a text file\n")
    Image.open(shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png").save(bad / "no_mpp.png")
    write_pyramidal_tiff(bad / "glass.tif", np.full((512, 512, 3), 244, np.uint8), mpp=0.5)
    listing = tmp_path / "cohort.txt"
    listing.write_text("\n".join([str(slides[0]), "bad/truncated.svs", "bad/notes.svs", "bad/no_mpp.png",
                                  "bad/glass.tif", "bad/missing.svs"]) + "\n")
    table = run_cohort([listing], checkpoint, tmp_path / "out", SETTINGS).set_index("slide_id")
    assert table.loc["board_a", "status"] == "ok" and table.loc["board_a", "n_tiles"] == 16
    expected = {
        "truncated": "truncated.svs: not a readable slide",
        "notes": "notes.svs: not a readable slide",
        "no_mpp": "no_mpp.png: no microns-per-pixel in the file's metadata; pass --mpp",
        "glass": "glass.tif: no tissue found",
        "missing": "missing.svs: slide not found",
    }
    for slide_id, message in expected.items():
        assert table.loc[slide_id, "status"] == "failed"
        assert message in table.loc[slide_id, "error"] and "\n" not in table.loc[slide_id, "error"]
    assert len(pd.read_csv(tmp_path / "out" / "cohort.csv")) == 6


def test_checkpoint_and_output_folder_errors_are_one_line(slides, tmp_path):
    not_ldcsf = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, not_ldcsf)
    with pytest.raises(ValueError, match="not an ldcsf checkpoint") as err:
        run_cohort(slides[:1], not_ldcsf, tmp_path / "out", SETTINGS)
    assert str(err.value).startswith(str(not_ldcsf)) and "\n" not in str(err.value)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(PermissionError, match="cannot write outputs there"):
        run_cohort(slides[:1], not_ldcsf, a_file / "out", SETTINGS)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match=f"{locked}: cannot write outputs there"):
            run_cohort(slides[:1], not_ldcsf, locked, SETTINGS)
