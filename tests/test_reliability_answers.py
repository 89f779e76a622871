"""Hostile inputs that once gave a traceback or a misleading answer now give one clear line
naming the file and the problem (docs/reliability.md lists them)."""

from __future__ import annotations

import errno
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.cli.main import describe_os_error, main
from ldcsf.wholeslide import SlideSettings, collect_slides, run_cohort
from ldcsf.wsi import write_pyramidal_tiff

SETTINGS = SlideSettings(batch_size=4, progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = create_model("ldcsf_swin_micro")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.pt", model, CheckpointMeta.for_model(model, mpp=2.0))


@pytest.fixture(scope="module")
def tissue_rgb(shared_data) -> np.ndarray:
    """512 x 512 px of real stroma and tumour (NCT-CRC tiles, reflected to 256 px)."""
    nct = shared_data / "nct_crc"
    tiles = [np.pad(np.asarray(Image.open(nct / f).convert("RGB")), ((0, 32), (0, 32), (0, 0)), mode="reflect")
             for f in ("STR-TCGA-HGDYLEWM.png", "TUM-TCGA-DRHQMTQA.png")]
    top = np.concatenate(tiles, 1)
    return np.concatenate([top, top[:, ::-1]], 0)


def one_error_line(capsys, command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"ldcsf {command}")]
    assert len(lines) == 1, lines
    return lines[0]


# -- outputs: unwritable, occupied, full -------------------------------------------------------------
def test_unwritable_outputs_are_refused_before_any_work(shared_data, checkpoint, tmp_path, capsys):
    image = shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png"
    folder = tmp_path / "a_folder"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(folder)]) == 1
    assert f"{folder}: is a folder; give a file name" in one_error_line(capsys, "predict")
    assert main(["train", "--data", str(a_file), "--out", str(a_file)]) == 1
    assert f"{a_file}: is a file, not a folder" in one_error_line(capsys, "train")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(a_file), "--out", str(a_file / "x")]) == 1
    assert f"{a_file / 'x'}: cannot write outputs there" in one_error_line(capsys, "evaluate")
    assert main(["data", "import-folders", str(tmp_path), "--mapping", "nct_crc_he_100k",
                 "--out", str(a_file / "manifest.csv")]) == 1
    assert f"{a_file}: is a file, not a folder" in one_error_line(capsys, "data")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(locked / "p.csv")]) == 1
        assert "cannot write outputs there" in one_error_line(capsys, "predict")


def test_a_full_disk_is_one_line_with_the_path():
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OSError) as err:
        with open("/dev/full", "w") as handle:
            handle.write("x" * 65536)
            handle.flush()
    err.value.filename = "/data/out/case/tiles.parquet"
    assert err.value.errno == errno.ENOSPC
    assert describe_os_error(err.value) == ("/data/out/case/tiles.parquet: No space left on device "
                                            "(free space there, then rerun: finished work is kept)")


# -- checkpoints from strangers --------------------------------------------------------------------
def _meta_checkpoint(path: Path, **changes) -> Path:
    model = create_model("ldcsf_swin_micro")
    meta = CheckpointMeta.for_model(model)
    for key, value in changes.items():
        setattr(meta, key, value)
    return save_checkpoint(path, model, meta)


def test_checkpoint_meta_is_validated(tmp_path):
    cases = {
        "thresholds": ([0.5, 0.5], "checkpoint meta 'thresholds' must give one threshold per label (4 labels, 2 thresholds)"),
        "labels": (["stroma", "stroma", "tumor", "x"], "checkpoint meta 'labels' has a label twice"),
        "input_size": (4, "checkpoint meta 'input_size' must be a whole number of pixels"),
        "mean": ([0.5], "checkpoint meta 'mean' must be three numbers"),
        "model_name": ("no_such_model", "checkpoint meta 'model_name' names no known model"),
    }
    for field, (value, message) in cases.items():
        path = _meta_checkpoint(tmp_path / f"{field}.pt", **{field: value})
        with pytest.raises(ValueError) as err:
            load_checkpoint(path)
        assert str(err.value).startswith(f"{path}: {message}"), str(err.value)


def test_checkpoints_never_name_outside_weights(tmp_path):
    for kwargs, where in (({"pretrained_file": "/etc/passwd"}, "model_kwargs.pretrained_file"),
                          ({"pretrained": True}, "model_kwargs.pretrained"),
                          ({"backbone_kwargs": {"pretrained_cfg_overlay": {"file": "/etc/shadow"}}},
                           "model_kwargs.backbone_kwargs.pretrained_cfg_overlay"),
                          ({"backbone": "hf-hub:someone/weights"}, "model_kwargs.backbone")):
        model = create_model("ldcsf_swin_micro")
        meta = CheckpointMeta.for_model(model)
        meta.model_kwargs = {**meta.model_kwargs, **kwargs}
        path = save_checkpoint(tmp_path / "outside.pt", model, meta)
        with pytest.raises(ValueError, match=f"checkpoint meta '{where}'") as err:
            load_checkpoint(path)
        assert "refused" in str(err.value)


class _RunsCode:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_never_runs_and_torchs_advice_is_not_repeated(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "ldcsf-checkpoint", "meta": {}, "state_dict": {}, "x": _RunsCode(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(ValueError) as err:
        load_checkpoint(evil)
    assert not marker.exists()  # nothing in the file ran
    assert str(err.value) == (f"{evil}: refused: it holds pickled Python objects besides weights, "
                              "and loading those could run code")
    slide = tmp_path / "s.tif"
    write_pyramidal_tiff(slide, np.full((64, 64, 3), 200, np.uint8), mpp=0.5)
    assert main(["slide", str(slide), "--checkpoint", str(evil), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    line = one_error_line(capsys, "slide")
    assert "weights_only" not in line and "refused" in line and not marker.exists()
    # a backbone weights file (pretrained_file=) is refused the same way
    from ldcsf.models.backbones import read_state_dict

    with pytest.raises(ValueError) as err:
        read_state_dict(evil)
    assert "weights_only" not in str(err.value) and "refused" in str(err.value) and not marker.exists()
    # a plain pickle (no torch zip) is refused the same way
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match="refused|not a readable checkpoint"):
        load_checkpoint(plain)
    assert not marker.exists()


def test_labels_without_tumor_and_stroma_are_refused_before_predicting(tissue_rgb, tmp_path, caplog):
    model = create_model("ldcsf_swin_micro", labels=["necrosis", "non_tumor"])
    ckpt = save_checkpoint(tmp_path / "no_tsr.pt", model, CheckpointMeta.for_model(model, mpp=2.0))
    slide = write_pyramidal_tiff(tmp_path / "s.tif", tissue_rgb, mpp=0.5)
    with pytest.raises(ValueError) as err:
        run_cohort([slide], ckpt, tmp_path / "out", SETTINGS)
    assert str(err.value).startswith(f"{ckpt}: labels ['necrosis', 'non_tumor'] lack 'stroma' and 'tumor'")
    assert not (tmp_path / "out" / "s").exists()  # refused before any slide was touched

    from ldcsf.training.train import _warn_without_tsr_labels

    with caplog.at_level("WARNING"):
        _warn_without_tsr_labels(["necrosis", "tumor"], "m.csv")
    assert "m.csv: labels ['necrosis', 'tumor'] lack 'stroma'" in caplog.text


# -- manifests -------------------------------------------------------------------------------------
def test_manifest_leaks_conflicts_duplicates_and_empty_tables(tmp_path, caplog):
    from ldcsf.data.manifest import read_manifest

    for i in range(2):
        Image.new("RGB", (8, 8), (200, 100, 150)).save(tmp_path / f"i{i}.png")
    header = "path,stroma,necrosis,non_tumor,tumor,split\n"
    cases = {
        "leak": (header + "i0.png,1,0,0,0,train\ni0.png,1,0,0,0,test\n", "i0.png is listed in splits test, train"),
        "conflict": (header + "i0.png,1,0,0,0,train\ni0.png,0,0,0,1,train\n", "i0.png is listed 2 times with different labels"),
        "empty": (header, "the manifest has no rows"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(ValueError) as err:
            read_manifest(path)
        assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)
    dup = tmp_path / "dup.csv"
    dup.write_text(header + "i0.png,1,0,0,0,train\ni0.png,1,0,0,0,train\ni1.png,0,0,0,1,train\n")
    with caplog.at_level("WARNING"):
        assert len(read_manifest(dup)) == 3
    assert "1 images are listed more than once" in caplog.text


# -- slides and slide lists ------------------------------------------------------------------------
def test_small_grey_and_pipe_slides_are_named_for_what_they_are(tissue_rgb, checkpoint, tmp_path):
    small = write_pyramidal_tiff(tmp_path / "small.tif", tissue_rgb[:120, :120].copy(), mpp=0.5)
    grey = tissue_rgb.mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.uint8)
    grey_slide = write_pyramidal_tiff(tmp_path / "grey.tif", grey, mpp=0.5)
    pipe = tmp_path / "pipe.svs"
    os.mkfifo(pipe)
    start = time.monotonic()
    table = run_cohort([small, grey_slide, pipe], checkpoint, tmp_path / "out", SETTINGS).set_index("slide_id")
    assert time.monotonic() - start < 120  # the pipe did not block the run
    assert "small.tif: the slide (120x120 px) is smaller than one tile (256x256 px" in table.loc["small", "error"]
    assert "grey.tif: the slide has no colour (greyscale)" in table.loc["grey", "error"]
    assert "pipe.svs: not a regular file (a pipe or device?)" in table.loc["pipe", "error"]


def test_a_latin1_slide_list_is_named(tmp_path):
    listing = tmp_path / "slides.txt"
    listing.write_bytes("café.svs\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{listing}: not UTF-8 text \(byte 3\); save the list as UTF-8"):
        collect_slides([listing])


def test_cohort_cells_never_run_as_spreadsheet_formulas(tissue_rgb, checkpoint, tmp_path):
    slide = write_pyramidal_tiff(tmp_path / "=HYPERLINK(1).tif", tissue_rgb, mpp=0.5)
    minus = write_pyramidal_tiff(tmp_path / "-2+3.tif", tissue_rgb, mpp=0.5)
    run_cohort([slide, minus], checkpoint, tmp_path / "out", SETTINGS)
    cohort = pd.read_csv(tmp_path / "out" / "cohort.csv", dtype=str)
    for column in ("slide_id", "path"):
        assert not cohort[column].str.match(r"^[=+\-@]").any(), cohort[column].tolist()
    assert sorted(cohort["slide_id"]) == ["'-2+3", "'=HYPERLINK(1)"]  # kept, as text


# -- exit status, --strict, left-over temporaries ---------------------------------------------------
def test_exit_status_tells_scripts_that_some_slides_failed(tissue_rgb, checkpoint, tmp_path, capsys):
    good = write_pyramidal_tiff(tmp_path / "in" / "good.tif", tissue_rgb, mpp=0.5)
    bad = tmp_path / "in" / "bad.svs"
    bad.write_text("not a slide")
    common = ["--checkpoint", str(checkpoint), "--num-workers", "0", "--threads", "1", "--no-progress"]
    assert main(["slide", str(bad), str(good), "--out", str(tmp_path / "o1"), *common]) == 3
    assert "1 of 2 slides failed" in capsys.readouterr().err
    assert main(["slide", str(bad), str(good), "--out", str(tmp_path / "o2"), "--strict", *common]) == 1
    assert "bad.svs: not a readable slide" in one_error_line(capsys, "slide")
    assert not (tmp_path / "o2" / "good").exists()  # --strict stopped at the first failure


def test_temporaries_left_by_a_kill_are_swept_on_start(tissue_rgb, checkpoint, tmp_path):
    slide = write_pyramidal_tiff(tmp_path / "case.tif", tissue_rgb, mpp=0.5)
    out = tmp_path / "out"
    run_cohort([slide], checkpoint, out, SETTINGS)
    left = [out / "case" / ".tiles.parquet.abc123.tmp.parquet", out / ".cohort.csv.k2j3.tmp.csv"]
    for path in left:
        path.write_text("half a file")
    old = time.time() - 3600
    os.utime(left[1], (old, old))  # at the root only stale ones go: another run may be writing there
    fresh = out / ".cohort.csv.zz99.tmp.csv"
    fresh.write_text("being written")
    assert run_cohort([slide], checkpoint, out, SETTINGS)["status"].tolist() == ["skipped"]
    assert not any(p.exists() for p in left) and fresh.exists()


def test_a_training_run_shorter_than_an_epoch_validates_and_saves(shared_data, tmp_path):
    from ldcsf.training import TrainConfig, train

    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = source[source["path"].str.startswith("nct_crc/")].head(30).copy()
    rows["path"] = [str(shared_data / p) for p in rows["path"]]
    rows["split"] = np.array(["train", "train", "val"])[np.arange(len(rows)) % 3]
    manifest = tmp_path / "m.csv"
    rows[["path", "stroma", "necrosis", "non_tumor", "tumor", "split"]].to_csv(manifest, index=False)
    config = TrainConfig(data=str(manifest), model="ldcsf_swin_micro", out=str(tmp_path / "run"), epochs=3,
                         batch_size=4, max_steps=2, patience=2, num_workers=0, accelerator="cpu", devices=1,
                         progress=False)
    result = train(config)  # 20 training images = 5 steps an epoch; stopped after 2
    assert result.best_checkpoint.is_file() and result.model_file.is_file()
    assert load_checkpoint(result.model_file).meta.labels == ["stroma", "necrosis", "non_tumor", "tumor"]
