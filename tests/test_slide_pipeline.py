"""`ldcsf slide` end to end on the real CMU slide, and the command line around it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ldcsf import create_model
from ldcsf.analysis.tile_table import tile_table_columns
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.cli.main import main
from ldcsf.wholeslide import SlideSettings, collect_slides, run_cohort
from ldcsf.wsi import TileSpec, detect_tissue, open_slide, tile_grid, write_pyramidal_tiff

CMU = "slides/CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A micro model whose 64 px input covers 80 µm (1.25 µm/px): ~100 tiles on the CMU slide."""
    model = create_model("ldcsf_swin_micro")
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    return save_checkpoint(path, model, CheckpointMeta.for_model(model, thresholds=[0.5, 0.4, 0.6, 0.5], mpp=1.25))


@pytest.fixture(scope="module")
def cmu_run(shared_data, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmu")
    table = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(batch_size=32, progress=False))
    return out, table


def test_cmu_slide_end_to_end(shared_data, checkpoint, cmu_run):
    out, table = cmu_run
    slide_dir = out / "CMU-1-Small-Region"
    assert table["status"].tolist() == ["ok"] and table["error"].tolist() == [""]
    labels = ["stroma", "necrosis", "non_tumor", "tumor"]
    expected_files = ["tsr.json", "tiles.parquet", "tiles.csv", "overlay.png", "tiles.geojson", "report.html"]
    expected_files += [f"heatmap_{name}.png" for name in labels]
    for name in expected_files:
        assert (slide_dir / name).is_file() and (slide_dir / name).stat().st_size > 0, name
    assert not (slide_dir / ".parts").exists()  # batch parts are removed once outputs are complete

    tiles = pd.read_parquet(slide_dir / "tiles.parquet")
    assert list(tiles.columns) == tile_table_columns(labels)
    # The same tiles as the grid the slide's own tissue mask gives at 1.25 µm/px.
    with open_slide(shared_data / CMU) as slide:
        thumb, downsample = slide.thumbnail(2048)
        grid = tile_grid(slide.dimensions, TileSpec.for_model(64, 1.25, slide.mpp), detect_tissue(thumb, downsample, slide.mpp))
    assert 50 < len(tiles) < 200
    pd.testing.assert_frame_equal(tiles[grid.columns], grid, check_dtype=False)
    assert (tiles["width"] == round(64 * 1.25 / 0.499)).all()
    for label, threshold in zip(labels, [0.5, 0.4, 0.6, 0.5]):
        prob = tiles[f"prob_{label}"]
        assert prob.between(0, 1).all()
        assert (tiles[f"pred_{label}"] == (prob >= threshold).astype(int)).all()

    cohort = pd.read_csv(out / "cohort.csv")
    assert cohort.loc[0, "slide_id"] == "CMU-1-Small-Region" and cohort.loc[0, "n_tiles"] == len(tiles)
    assert cohort.loc[0, "tissue_area_mm2"] == pytest.approx(tiles["tissue_area_mm2"].sum(), rel=1e-6)
    settings = json.loads((slide_dir / "tsr.json").read_text())["settings"]
    assert settings["tile_mpp"] == 1.25 and settings["slide_mpp"] == pytest.approx(0.499)


def test_rerun_skips_a_finished_slide(shared_data, checkpoint, cmu_run):
    out, first = cmu_run
    before = (out / "CMU-1-Small-Region" / "tiles.parquet").stat().st_mtime_ns
    again = run_cohort([shared_data / CMU], checkpoint, out, SlideSettings(progress=False))
    assert again["status"].tolist() == ["skipped"]
    assert again["tsr"].tolist() == pytest.approx(first["tsr"].tolist())
    assert (out / "CMU-1-Small-Region" / "tiles.parquet").stat().st_mtime_ns == before


def board_slide(shared_data, path, blank=False):
    """A 448 px pyramidal TIFF (0.5 µm/px) of real stroma and tumour tiles, or of bare glass."""
    if blank:
        rgb = np.full((448, 448, 3), 243, np.uint8)
    else:
        stroma = np.asarray(Image.open(shared_data / "nct_crc/STR-TCGA-HGDYLEWM.png").convert("RGB"))
        tumor = np.asarray(Image.open(shared_data / "nct_crc/TUM-TCGA-DRHQMTQA.png").convert("RGB"))
        rgb = np.concatenate([np.concatenate([stroma, tumor], 1), np.concatenate([tumor, stroma], 1)], 0)
    return write_pyramidal_tiff(path, rgb, mpp=0.5, tile_size=128)


def test_cli_single_slide(shared_data, checkpoint, tmp_path, capsys):
    slide = board_slide(shared_data, tmp_path / "board.tif")
    out = tmp_path / "out"
    code = main(["slide", str(slide), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--num-workers", "1", "--batch-size", "4", "--threads", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.splitlines()[0].split() == ["slide", "TSR", "category", "tiles", "status"]
    assert printed.splitlines()[2].split()[0] == "board" and printed.splitlines()[2].split()[-1] == "ok"
    # 448 px slide, 160 px tiles (80 µm at 0.5 µm/px): a 3 x 3 grid, the last row/column reaching the edge
    tiles = pd.read_csv(out / "board" / "tiles.csv")
    assert sorted(zip(tiles["row"], tiles["col"])) == [(r, c) for r in range(3) for c in range(3)]


def test_cli_one_line_errors(shared_data, checkpoint, tmp_path, capsys):
    import torch

    slide = board_slide(shared_data, tmp_path / "board.tif")
    blank = board_slide(shared_data, tmp_path / "glass.tif", blank=True)
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["slide", str(blank), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o1")], f"{blank}: no tissue found"),
        (["slide", str(slide), "--checkpoint", str(other), "--out", str(tmp_path / "o2")], f"{other}: not an ldcsf checkpoint"),
        (["slide", str(slide), "--checkpoint", str(checkpoint), "--out", str(a_file / "out")], f"{a_file / 'out'}: cannot write"),
        (["slide", str(tmp_path / "nope.svs"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o3")], "nope.svs: no such"),
        (["slide", str(slide), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o4"), "--threads", "0"], "--threads must be at least 1"),
    ]
    for argv, message in cases:
        code = main([*argv, "--no-progress", "--num-workers", "0"])
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.startswith("ldcsf slide")]
        assert code == 1, argv
        assert len(lines) == 1 and message in lines[0], captured.err


def test_collect_slides_from_folders_and_lists(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.svs", "sub/b.ndpi", "notes.txt", "sub/c.tif"):
        (tmp_path / "in" / name).write_bytes(b"")
    (tmp_path / "in" / "out").mkdir()
    (tmp_path / "in" / "out" / "overlay.png").write_bytes(b"")  # an output, not a slide
    found = collect_slides([tmp_path / "in"], exclude=tmp_path / "in" / "out")
    assert [p.relative_to(tmp_path / "in").as_posix() for p in found] == ["a.svs", "sub/b.ndpi", "sub/c.tif"]
    listing = tmp_path / "in" / "list.txt"
    listing.write_text("# cohort A\na.svs\n\nsub/c.tif\n")
    assert collect_slides([listing]) == [tmp_path / "in" / "a.svs", tmp_path / "in" / "sub" / "c.tif"]
    table = tmp_path / "slides.csv"
    pd.DataFrame({"case": ["x", "y"], "path": ["in/a.svs", "in/sub/b.ndpi"]}).to_csv(table, index=False)
    assert collect_slides([table]) == [tmp_path / "in" / "a.svs", tmp_path / "in" / "sub" / "b.ndpi"]
    (tmp_path / "in" / "sub" / "a.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="same slide id 'a'"):
        collect_slides([tmp_path / "in" / "a.svs", tmp_path / "in" / "sub" / "a.tif"])


def test_tiles_stay_uint8_until_the_batch_is_normalised(shared_data, checkpoint):
    """TileDataset hands out uint8 tiles; Predictor normalises a whole batch with the checkpoint's mean/std."""
    from torch.utils.data import default_collate

    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.inference import Predictor
    from ldcsf.wholeslide import TileDataset

    loaded = load_checkpoint(checkpoint)
    boxes = np.array([[1000, 1500, 160, 160], [0, 0, 160, 160], [2180, 2900, 160, 160]])  # tissue, corner, off the edge
    dataset = TileDataset(shared_data / CMU, boxes, [7, 8, 9], 64)
    batch, index = default_collate([dataset[i] for i in range(3)])
    dataset.close()
    assert batch.dtype == torch.uint8 and batch.shape == (3, 64, 64, 3) and index.tolist() == [7, 8, 9]
    assert (batch[2, -8:, -8:] == 255).all()  # off the slide reads as glass
    mean, std = torch.tensor(loaded.meta.mean).view(1, 3, 1, 1), torch.tensor(loaded.meta.std).view(1, 3, 1, 1)
    expected = (batch.permute(0, 3, 1, 2).float() / 255 - mean) / std
    for channels_last in (False, True):
        predictor = Predictor(loaded.model, loaded.meta.mean, loaded.meta.std, channels_last=channels_last)
        images = predictor.normalise(batch)
        torch.testing.assert_close(images, expected)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert images.is_contiguous(memory_format=layout)
