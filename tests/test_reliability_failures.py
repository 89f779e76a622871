"""Hostile inputs and faults that once gave a wrong, silent or unbounded answer (docs/reliability.md).

Each test here failed before its fix: stale reruns, writes outside --out, ignored SIGTERM,
implausible µm/px, decompression bombs, concurrent runs, damaged weights, 16-bit pictures.
"""

from __future__ import annotations

import dataclasses

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ldcsf
from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.cli.main import main
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.wsi import open_slide, write_pyramidal_tiff

SETTINGS = SlideSettings(batch_size=4, progress=False)
SRC = Path(ldcsf.__file__).resolve().parents[1]  # the ldcsf under test, for subprocesses


def micro_checkpoint(path: Path, mpp: float = 2.0, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model("ldcsf_swin_micro")
    return save_checkpoint(path, model, CheckpointMeta.for_model(model, mpp=mpp))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """64 px input at 2 µm/px: 256 level-0 px tiles on a 0.5 µm/px slide."""
    return micro_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.pt")


@pytest.fixture(scope="module")
def board_rgb(shared_data) -> np.ndarray:
    """512 x 512 px of real stroma and tumour tiles (NCT-CRC), a 2 x 2 tile grid at 256 px."""
    nct = shared_data / "nct_crc"
    stroma = np.asarray(Image.open(nct / "STR-TCGA-HGDYLEWM.png").convert("RGB"))
    tumor = np.asarray(Image.open(nct / "TUM-TCGA-DRHQMTQA.png").convert("RGB"))
    pad = lambda a: np.pad(a, ((0, 32), (0, 32), (0, 0)), mode="reflect")  # noqa: E731 - 224 -> 256 px
    top = np.concatenate([pad(stroma), pad(tumor)], 1)
    return np.concatenate([top, top[:, ::-1]], 0)


def board(folder: Path, name: str, rgb: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_pyramidal_tiff(folder / name, rgb, mpp=0.5, tile_size=128)


def cli(*argv: str) -> int:
    return main([*argv, "--no-progress", "--num-workers", "0", "--threads", "1", "--batch-size", "4"])


# -- 1. a rerun never reports results of other inputs -----------------------------------------------
def test_rerun_with_another_checkpoint_or_setting_is_refused(board_rgb, checkpoint, tmp_path):
    slide = board(tmp_path / "in", "case.tif", board_rgb)
    out = tmp_path / "out"
    first = run_cohort([slide], checkpoint, out, SETTINGS)
    assert first["status"].tolist() == ["ok"]
    assert run_cohort([slide], checkpoint, out, SETTINGS)["status"].tolist() == ["skipped"]

    other = micro_checkpoint(tmp_path / "other.pt", seed=1)
    refused = run_cohort([slide], other, out, SETTINGS)
    assert refused["status"].tolist() == ["failed"]
    assert "holds results made with another checkpoint" in refused.loc[0, "error"]
    assert "--overwrite" in refused.loc[0, "error"]
    stricter = run_cohort([slide], checkpoint, out, SlideSettings(batch_size=4, min_tissue=0.9, progress=False))
    assert stricter["status"].tolist() == ["failed"] and "another tiling" in stricter.loc[0, "error"]
    # the refused reruns left the finished results as they were
    assert run_cohort([slide], checkpoint, out, SETTINGS)["status"].tolist() == ["skipped"]

    replaced = run_cohort([slide], other, out, SlideSettings(batch_size=4, progress=False, overwrite=True))
    assert replaced["status"].tolist() == ["ok"]
    assert replaced.loc[0, "stroma_fraction"] != pytest.approx(first.loc[0, "stroma_fraction"], abs=1e-9)
    assert run_cohort([slide], other, out, SETTINGS)["status"].tolist() == ["skipped"]


def test_two_files_with_one_stem_never_share_a_folder(board_rgb, checkpoint, tmp_path, capsys):
    tif = board(tmp_path / "in", "rgba.tif", board_rgb)
    png = tmp_path / "in" / "rgba.png"
    Image.fromarray(board_rgb[:, ::-1].copy()).save(png, dpi=(25400 / 0.5, 25400 / 0.5))
    out = tmp_path / "out"
    assert cli("slide", str(png), "--checkpoint", str(checkpoint), "--out", str(out)) == 0
    capsys.readouterr()
    assert cli("slide", str(tif), "--checkpoint", str(checkpoint), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert f"{out / 'rgba'}: holds results of another slide file ('rgba.png')" in err
    assert json.loads((out / "rgba" / "tsr.json").read_text())["slide_path"] == str(png)
    assert cli("slide", str(tif), "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "rgba" / "tsr.json").read_text())["slide_path"] == str(tif)


# -- 2. every output stays inside --out ----------------------------------------------------------
def test_dot_named_slides_write_inside_out(board_rgb, checkpoint, tmp_path):
    three = board(tmp_path / "in", "...tif", board_rgb)
    two = board(tmp_path / "in", "..tif", board_rgb[::-1].copy())
    parent = tmp_path / "work"
    out = parent / "out"
    table = run_cohort([three, two], checkpoint, out, SETTINGS)
    assert table["status"].tolist() == ["ok", "ok"]
    assert table["slide_id"].tolist() == ["__", "_"]
    assert sorted(p.name for p in parent.iterdir()) == ["out"]  # nothing beside --out
    assert (out / "__" / "tsr.json").is_file() and (out / "_" / "tsr.json").is_file()
    assert not (out / "tsr.json").exists()  # nothing in the --out root but the cohort table


def test_path_inside_refuses_escapes(tmp_path):
    from ldcsf.utils.paths import path_inside, safe_name

    (tmp_path / "out").mkdir()
    os.symlink(tmp_path, tmp_path / "out" / "link")
    with pytest.raises(ValueError, match="outside the output folder"):
        path_inside(tmp_path / "out", "link")
    with pytest.raises(ValueError, match="outside the output folder"):
        path_inside(tmp_path / "out", "..")
    assert path_inside(tmp_path / "out", "case") == tmp_path / "out" / "case"
    assert [safe_name(n) for n in ("..", ".", "a/b", "", ".hidden", "ok-1.2")] == ["__", "_", "a_b", "slide", "_hidden", "ok-1.2"]


# -- 3. SIGTERM and Ctrl-C stop a run cleanly, and it resumes --------------------------------------
@pytest.mark.parametrize("signum, code, words", [(signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGINT, 130, "interrupted")])
def test_signals_stop_a_slide_run_which_then_resumes(shared_data, tmp_path, caplog, signum, code, words):
    ckpt = micro_checkpoint(tmp_path / "fine.pt", mpp=0.5)  # ~600 tiles of 64 px on the CMU slide
    slide = shared_data / "slides/CMU-1-Small-Region.svs"
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "ldcsf.cli.main", "slide", str(slide), "--checkpoint", str(ckpt), "--out", str(out),
            "--batch-size", "4", "--num-workers", "1", "--threads", "1", "--limit-tiles", "160", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = out / "CMU-1-Small-Region" / ".parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.npz")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"ldcsf slide: {words}" in err and "Traceback" not in err
    kept = len(list(parts.glob("part-*.npz")))
    assert kept >= 1 and not (out / "CMU-1-Small-Region" / "tsr.json").exists()

    with caplog.at_level("INFO"):  # the rerun, in this process: it continues from the kept batches
        assert main(argv[3:]) == 0
    assert any("resuming" in r.getMessage() for r in caplog.records)
    assert pd.read_csv(out / "cohort.csv")["status"].tolist() == ["ok"]


# -- 4. implausible µm/px is refused ----------------------------------------------------------------
def test_implausible_mpp_is_refused_in_one_line(board_rgb, checkpoint, tmp_path, capsys):
    slide = board(tmp_path / "in", "case.tif", board_rgb)
    assert cli("slide", str(slide), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o1"), "--mpp", "50") == 1
    assert "--mpp 50.0 is not a plausible µm/px" in capsys.readouterr().err
    # 64 px at 2 µm/px on a slide said to be at 15 µm/px: 9 px tiles
    assert cli("slide", str(slide), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o2"), "--mpp", "15") == 1
    assert "tiles would be 9 px at full resolution" in capsys.readouterr().err
    model = create_model("ldcsf_swin_micro")
    # A checkpoint written by other code: the meta is made valid, then given a zero µm/px.
    meta = dataclasses.replace(CheckpointMeta.for_model(model, mpp=1.0), mpp=0.0)
    zero = save_checkpoint(tmp_path / "zero.pt", model, meta)
    with pytest.raises(ValueError, match=r"zero.pt: checkpoint meta 'mpp' must be a plausible µm/px"):
        load_checkpoint(zero)


# -- 5. a decompression bomb is refused before decoding -------------------------------------------
def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height RGB px, with a few bytes of pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    return path


def test_huge_picture_is_refused_before_decoding(tmp_path):
    bomb = png_header_only(tmp_path / "bomb.png", 60000, 60000)
    start = time.monotonic()
    with pytest.raises(ValueError) as err:
        open_slide(bomb, mpp=0.5)
    message = str(err.value)
    assert message.startswith(f"{bomb}: a 60000x60000 px picture (3.6 Gpx) is larger than the 2 Gpx a plain PNG/JPEG "
                              "may have: it is read whole, which would take 20.1 GiB of memory") and "pyramidal TIFF" in message
    assert time.monotonic() - start < 5  # refused from the header: nothing was decoded
    larger = png_header_only(tmp_path / "larger.png", 100000, 100000)
    with pytest.raises(ValueError, match=r"larger.png: .*pyramidal TIFF"):
        open_slide(larger, mpp=0.5)


def test_a_picture_larger_than_free_memory_is_refused_saying_so(tmp_path, monkeypatch):
    from ldcsf.wsi import picture_reader

    monkeypatch.setattr(picture_reader, "available_memory_bytes", lambda: 2**30)
    picture = png_header_only(tmp_path / "big.png", 20000, 20000)
    with pytest.raises(ValueError) as err:
        open_slide(picture, mpp=0.5)
    assert str(err.value).startswith(f"{picture}: a 20000x20000 px picture is read whole, which would take 2.2 GiB "
                                     "of memory, and only 1.0 GiB is free; convert it to a pyramidal TIFF")


# -- 6. two runs sharing --out both appear in cohort.csv ------------------------------------------------
def test_concurrent_runs_on_one_out_both_reach_the_cohort_table(board_rgb, checkpoint, tmp_path):
    import multiprocessing

    a = board(tmp_path / "in", "a.tif", board_rgb)
    b = board(tmp_path / "in", "b.tif", board_rgb[::-1].copy())
    out = tmp_path / "out"
    # Two real processes (forked, so they start without importing torch again) on one --out.
    context = multiprocessing.get_context("fork")
    runs = [context.Process(target=_slide_process, args=(slide, checkpoint, out)) for slide in (a, b)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
        assert run.exitcode == 0
    cohort = pd.read_csv(out / "cohort.csv")
    assert sorted(cohort["slide_id"]) == ["a", "b"] and set(cohort["status"]) == {"ok"}


def _slide_process(slide: Path, checkpoint: Path, out: Path) -> None:
    sys.exit(cli("slide", str(slide), "--checkpoint", str(checkpoint), "--out", str(out)))


def test_a_slide_folder_in_use_is_reported_busy(board_rgb, checkpoint, tmp_path):
    from ldcsf.wholeslide.cohort import slide_folder_lock

    slide = board(tmp_path / "in", "case.tif", board_rgb)
    out = tmp_path / "out"
    with slide_folder_lock(out / "case"):  # as another process would hold it
        table = run_cohort([slide], checkpoint, out, SETTINGS)
    assert table["status"].tolist() == ["failed"] and "another ldcsf run is working on this slide" in table.loc[0, "error"]
    assert run_cohort([slide], checkpoint, out, SETTINGS)["status"].tolist() == ["ok"]


# -- 7. damaged weights are found on load -------------------------------------------------------------
def flip_bytes_in_largest_tensor(path: Path, count: int = 585) -> None:
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    # The local header is 30 bytes plus the name and extra field; torch stores tensors uncompressed.
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    rng = np.random.default_rng(0)
    for offset in rng.choice(info.file_size, size=min(count, info.file_size), replace=False):
        data[start + int(offset)] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_refused(tmp_path):
    path = micro_checkpoint(tmp_path / "micro.pt")
    load_checkpoint(path)  # intact: loads
    flip_bytes_in_largest_tensor(path)
    assert torch.load(path, weights_only=True)  # torch itself notices nothing
    with pytest.raises(ValueError, match=r"micro.pt: the weights are damaged: their SHA-256 differs"):
        load_checkpoint(path)


def test_trained_lightning_checkpoints_carry_a_verified_digest(tmp_path):
    from ldcsf.checkpoint import WEIGHTS_DIGEST_KEY
    from ldcsf.checkpoint_safety import weights_digest

    model = create_model("ldcsf_swin_micro")
    meta = CheckpointMeta.for_model(model)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "ldcsf": meta.to_dict(), WEIGHTS_DIGEST_KEY: weights_digest(model.state_dict())}, path)
    assert load_checkpoint(path).weights_sha256 == weights_digest(model.state_dict())
    flip_bytes_in_largest_tensor(path)
    with pytest.raises(ValueError, match="weights are damaged"):
        load_checkpoint(path)


# -- 8. 16-bit greyscale is scaled, and named as not H&E ---------------------------------------------
def test_16_bit_greyscale_is_scaled_not_clipped_and_flagged(shared_data, tmp_path, caplog):
    from ldcsf.data.dataset import load_rgb
    from ldcsf.inference.image_prediction import predict_images

    grey8 = np.asarray(Image.open(shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png").convert("L"))
    grey16 = grey8.astype(np.uint16) * 257  # the same picture at 16 bits
    path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_rgb(path))
    assert np.array_equal(rgb[..., 0], grey8) and (rgb < 255).mean() > 0.5  # not clipped to white

    colour = tmp_path / "colour.png"
    Image.open(shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png").convert("RGB").save(colour)
    ckpt = micro_checkpoint(tmp_path / "c.pt", mpp=0.5)
    with caplog.at_level("WARNING"):
        table = predict_images([path, colour], ckpt)
    notes = [r.getMessage() for r in caplog.records if "not an RGB H&E stain" in r.getMessage()]
    assert notes == [f"{path}: greyscale picture (mode {Image.open(path).mode}), not an RGB H&E stain; its scores are not meaningful"]
    assert table["error"].tolist() == ["", ""]


def test_a_picture_far_below_the_models_input_is_scored_and_flagged(shared_data, tmp_path, caplog):
    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.inference.image_prediction import predict_images

    ckpt = micro_checkpoint(tmp_path / "c.pt", mpp=0.5)
    side = load_checkpoint(ckpt).meta.input_size
    tile = Image.open(shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png").convert("RGB")
    small, enough = tmp_path / "small.png", tmp_path / "enough.png"
    tile.crop((0, 0, side // 2 - 1, side)).save(small)  # enlarged more than twice on its short side
    tile.crop((0, 0, side // 2, side // 2)).save(enough)
    with caplog.at_level("WARNING"):
        table = predict_images([small, enough], ckpt)
    notes = [r.getMessage() for r in caplog.records if "enlarged to the model" in r.getMessage()]
    assert notes == [f"{small}: {side // 2 - 1}x{side} px, enlarged to the model's {side} px input; at this size its "
                     f"scores are not meaningful"]
    assert table["error"].tolist() == ["", ""] and table.filter(like="_prob").notna().all().all()


def test_a_picture_slide_is_decoded_once_per_process(shared_data, tmp_path):
    picture = tmp_path / "picture.png"
    Image.open(shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png").convert("RGB").save(picture)
    with open_slide(picture, mpp=0.5) as first, open_slide(picture, mpp=0.5) as second:
        assert np.shares_memory(first._array, second._array)  # the second open decoded nothing
        assert first.dimensions == second.dimensions == (224, 224)
        decoded = first._array
    picture.write_bytes(picture.read_bytes())  # a changed file (new mtime) is decoded again
    os.utime(picture, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with open_slide(picture, mpp=0.5) as third:
        assert not np.shares_memory(decoded, third._array) and third.dimensions == (224, 224)
