"""GlaS gland masks made class masks, resampled and tiled, on the real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.data.area_targets import cell_fractions
from ldcsf.data.glas import (BACKGROUND, NORMAL, SOURCE_MPP, STROMA, TILE_MPP, TILE_SIZE, TUMOR, class_mask,
                             glas_tiles, prepare_glas, read_glas_manifest, resample, unstained)
from ldcsf.data.manifest import default_labels
from ldcsf.data.masks import read_mask, tile_positions
from ldcsf.data.pancancer import load_source
from ldcsf.data.sources import DEFAULT_SOURCES, shared_source

LABELS = list(default_labels())
#: Two patients, each with a benign and a malignant image where possible.
PICKED = ("train_1", "testA_1", "testA_10", "testB_12")


@pytest.fixture(scope="module")
def glas(shared_data):
    folder = shared_data / "glas"
    if not (folder / "manifest.csv").is_file():
        pytest.skip(f"GlaS not found at {folder}")
    return folder


@pytest.fixture(scope="module")
def small_glas(glas, tmp_path_factory):
    """A GlaS folder of four real images (the manifest's paths made absolute)."""
    folder = tmp_path_factory.mktemp("shared") / "glas"  # the source's declared folder name
    folder.mkdir()
    frame = read_glas_manifest(glas)
    frame = frame[frame["image"].str.extract(r"images/(.+)\.jpg", expand=False).isin(PICKED)].copy()
    for column in ("image", "mask"):
        frame[column] = [str(glas / p) for p in frame[column]]
    frame.to_csv(folder / "manifest.csv", index=False)
    return folder, frame


def _load(folder, name):
    rgb = np.asarray(Image.open(folder / "images" / f"{name}.jpg").convert("RGB"))
    gland = np.asarray(Image.open(folder / "masks" / f"{name}.png").convert("L")) > 0
    return rgb, gland


def test_mask_rule_on_a_malignant_and_a_benign_image(glas):
    rgb, gland = _load(glas, "train_1")  # malignant
    classes = class_mask(gland, unstained(rgb), malignant=True)
    assert set(np.unique(classes)) <= {TUMOR, STROMA, BACKGROUND} and (classes == TUMOR).mean() > 0.2
    assert (classes[~gland] == STROMA).mean() > 0.9  # desmoplastic stroma is stained: kept
    rgb, gland = _load(glas, "testA_1")  # benign, glands full of goblet-cell mucin
    pale = unstained(rgb)
    classes = class_mask(gland, pale, malignant=False)
    assert TUMOR not in np.unique(classes) and (classes == NORMAL).any()
    assert pale[gland].mean() > 0.3  # mucin and lumen inside the glands are not epithelium
    assert (classes[gland & pale] == BACKGROUND).all()


def test_resample_keeps_indices_and_scales_to_the_tile_field(glas):
    rgb, gland = _load(glas, "train_1")
    classes = class_mask(gland, unstained(rgb), malignant=True)
    small_rgb, small_mask = resample(rgb, classes, SOURCE_MPP / TILE_MPP)
    assert small_rgb.shape == (370, 549, 3) and small_mask.shape == (370, 549)
    assert set(np.unique(small_mask)) <= set(np.unique(classes))
    for value in np.unique(classes):  # nearest neighbour: class shares survive within a point
        assert abs((small_mask == value).mean() - (classes == value).mean()) < 0.01


def test_source_tiles_group_by_patient_with_area_targets(small_glas, tmp_path):
    folder, picked = small_glas
    frame = load_source(shared_source("glas"), folder.parent, tmp_path, LABELS, progress=False)
    assert set(frame["dataset"]) == {"glas"} and set(frame["organ"]) == {"colorectal"}
    assert set(frame["group"]) == {f"glas:patient-{p}" for p in picked["patient_id"]}
    assert frame["source_image"].nunique() == len(PICKED)
    fractions = frame[["frac_tumor", "frac_stroma", "frac_normal", "frac_background"]].sum(axis=1)
    assert np.allclose(fractions, 1.0, atol=1e-5) and (frame["frac_background"] <= 0.5).all()
    benign = frame[frame["glas_grade"].eq("benign")]
    assert (benign["frac_tumor"] == 0).all() and (benign["tumor"] == 0).all()
    row = frame[frame["glas_grade"].eq("malignant")].sort_values("frac_tumor").iloc[-1]
    tile, mask = Image.open(row["path"]), read_mask(row["mask"])
    assert tile.size == (TILE_SIZE, TILE_SIZE) and mask.shape == (TILE_SIZE, TILE_SIZE)
    cells = cell_fractions(mask, (4, 4), LABELS)  # the area head's targets, as for WSSS4LUAD tiles
    assert abs(float(cells[LABELS.index("tumor")].mean()) - row["frac_tumor"]) < 1e-5
    assert cells[LABELS.index("necrosis")].isnan().all()


def test_a_wider_field_keeps_128_px_tiles_over_twice_the_microns(small_glas, tmp_path):
    folder, picked = small_glas
    default = glas_tiles(folder, tmp_path / "112um" / "glas", LABELS, progress=False)
    # through load_source, as a benchmark builds it: 128 px at 1.75 µm/px = 224 µm per tile
    wide = load_source(shared_source("glas"), folder.parent, tmp_path / "224um", LABELS, progress=False,
                       glas_mpp=2 * TILE_MPP)
    assert TILE_SIZE * 2 * TILE_MPP == 224
    assert {Image.open(p).size for p in wide["path"]} == {(TILE_SIZE, TILE_SIZE)}
    for name in ("train_1", "testA_1"):  # 775 x 522 px at 0.62 µm/px
        small, big = (np.asarray(Image.open(tmp_path / f / "glas" / "resampled" / "img" / f"{name}.png"))
                      for f in ("112um", "224um"))
        assert big.shape[:2] == (round(522 * SOURCE_MPP / (2 * TILE_MPP)), round(775 * SOURCE_MPP / (2 * TILE_MPP)))
        assert abs(2 * big.shape[0] - small.shape[0]) <= 1 and abs(2 * big.shape[1] - small.shape[1]) <= 1
        # About half the tiles per side (the grid plus one tile flush with the far edge): 5 x 3 -> 3 x 2.
        grids = [(tile_positions(a.shape[1], TILE_SIZE, TILE_SIZE), tile_positions(a.shape[0], TILE_SIZE, TILE_SIZE))
                 for a in (small, big)]
        assert [(len(xs), len(ys)) for xs, ys in grids] == [(5, 3), (3, 2)]
        tiles = wide[wide["source_image"].map(lambda p: Path(p).stem).eq(name)]
        assert len(tiles) and set(tiles["x"]) <= set(grids[1][0]) and set(tiles["y"]) <= set(grids[1][1])
    assert set(wide["group"]) == set(default["group"]) and len(wide) < len(default) / 2
    with pytest.raises(ValueError, match="GlaS tile µm/px must be positive"):
        prepare_glas(folder, tmp_path / "bad", tile_mpp=0)


def test_a_larger_input_cuts_the_same_field_from_finer_pixels(small_glas, tmp_path):
    folder, picked = small_glas
    default = glas_tiles(folder, tmp_path / "128px" / "glas", LABELS, progress=False)
    # 224 px at 0.5 µm/px = the same 112 µm: the scanner's 0.62 µm/px detail kept instead of shrunk to 0.875
    fine = load_source(shared_source("glas"), folder.parent, tmp_path / "224px", LABELS, progress=False,
                       glas_mpp=0.5, glas_tile_size=224)
    assert {Image.open(p).size for p in fine["path"]} == {(224, 224)}
    assert {read_mask(m).shape for m in fine["mask"]} == {(224, 224)}
    big = np.asarray(Image.open(tmp_path / "224px" / "glas" / "resampled" / "img" / "train_1.png"))
    assert big.shape[:2] == (round(522 * SOURCE_MPP / 0.5), round(775 * SOURCE_MPP / 0.5))
    # The same field per tile: the same tiles per image, and the same tissue in each (areas within resampling).
    default, fine = (f.assign(image=f["source_image"].map(lambda p: Path(p).stem)) for f in (default, fine))
    assert fine.groupby("image").size().to_dict() == default.groupby("image").size().to_dict()
    scaled = fine.assign(x=(fine["x"] * 0.5 / TILE_MPP).round().astype(int), y=(fine["y"] * 0.5 / TILE_MPP).round().astype(int))
    both = default.merge(scaled, on=["image", "x", "y"], suffixes=("_128", "_224"))
    assert len(both) >= 0.8 * len(default)
    for label in ("stroma", "tumor"):
        assert np.abs(both[f"frac_{label}_128"] - both[f"frac_{label}_224"]).max() < 0.05


def test_glas_is_declared_but_not_in_the_default_set(glas):
    source = shared_source("glas")
    assert source.layout == "gland_masks" and "Sirinukunwattana" in source.citation
    assert source not in DEFAULT_SOURCES
    with pytest.raises(ValueError, match="unknown shared source 'glass'"):
        shared_source("glass")


def test_bad_mask_names_the_file(small_glas, tmp_path):
    folder, picked = small_glas
    bad = picked.iloc[:1].assign(mask=str(tmp_path / "nowhere.png"))
    (tmp_path / "in").mkdir()
    bad.to_csv(tmp_path / "in" / "manifest.csv", index=False)
    with pytest.raises(FileNotFoundError, match="nowhere.png: mask of .* not found"):
        prepare_glas(tmp_path / "in", tmp_path / "out")
    pd.DataFrame({"image": ["a.jpg"]}).to_csv(tmp_path / "in" / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="manifest.csv: missing column"):
        prepare_glas(tmp_path / "in", tmp_path / "out")


def test_cli_names_an_unknown_added_source(shared_data, tmp_path, capsys):
    from ldcsf.cli.main import main

    code = main(["data", "pancancer", "--shared", str(shared_data), "--out", str(tmp_path), "--add-source", "glass"])
    assert code != 0 and "unknown shared source 'glass'" in capsys.readouterr().err
