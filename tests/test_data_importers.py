"""Class-folder, file-name and mask importers, mapping tables and grouped splits."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.data.importers import derive_groups, import_class_folders, import_filename_labels, parse_filename_labels
from ldcsf.data.manifest import read_manifest
from ldcsf.data.mapping import apply_mapping, read_mapping, shipped_mappings
from ldcsf.data.masks import WSSS4LUAD, labels_from_fractions, mask_fractions, read_mask, tile_masks, tile_positions
from ldcsf.data.splits import assign_splits, check_groups_disjoint
from ldcsf.cli.main import main

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def test_shipped_mappings_cover_their_classes():
    assert {"nct_crc_he_100k", "kather2016", "oral_oscc", "osteosarcoma", "lc25000", "liver_chol"} <= set(shipped_mappings())
    nct = read_mapping("nct_crc_he_100k")
    assert list(nct.columns) == LABELS
    assert set(nct.index) == {"ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"}
    assert nct.loc["DEB", "necrosis"] == 1 and nct.loc["STR", "stroma"] == 1 and nct.loc["TUM", "tumor"] == 1
    assert (nct.loc["BACK"] == 0).all()
    kather = read_mapping("kather2016")
    assert len(kather) == 8 and kather.loc["03_COMPLEX", "stroma"] == 1 and math.isnan(kather.loc["03_COMPLEX", "tumor"])


def test_mapping_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("source_class,tumor\nA,1\nB,maybe\n")
    with pytest.raises(ValueError, match=r"bad\.csv: row 3, column 'tumor': unknown label value 'maybe'"):
        read_mapping(bad)
    with pytest.raises(ValueError, match="unknown mapping table 'nope'"):
        read_mapping("nope")
    table = read_mapping("lc25000")
    with pytest.raises(ValueError, match="no row for source class"):
        apply_mapping(pd.DataFrame({"source_class": ["lung_aca", "brain"]}), table)


def test_class_folders_on_real_oral_images(shared_data):
    frame = import_class_folders(shared_data / "oral" / "train", "oral_oscc", dataset="oral")
    counts = frame["source_class"].value_counts()
    assert counts["OSCC"] == len(list((shared_data / "oral/train/OSCC").glob("*.jpg"))) == 735
    assert counts["Normal"] == 240
    normal = frame[frame.source_class == "Normal"]
    assert (normal["non_tumor"] == 1).all() and (normal["tumor"] == 0).all() and normal["stroma"].isna().all()
    assert frame["group"].is_unique  # no group pattern: each image its own group


def test_class_folders_unknown_class_is_an_error(tmp_path):
    for cls in ("TUM", "XYZ"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / cls / "a.png")
    with pytest.raises(ValueError, match=r"class folder\(s\) XYZ have no row"):
        import_class_folders(tmp_path, "nct_crc_he_100k")


def test_folders_and_predict_read_the_same_image_files(shared_data, tmp_path):
    """A real tile saved as WebP is imported from a class folder and found by `ldcsf predict` alike."""
    from ldcsf.inference.image_prediction import collect_images

    tile = Image.open(shared_data / "nct_crc" / "TUM-AACHEHDV.tif")
    for cls, suffix in (("TUM", "webp"), ("STR", "png")):
        (tmp_path / cls).mkdir()
        tile.save(tmp_path / cls / f"tile.{suffix}")
    frame = import_class_folders(tmp_path, "nct_crc_he_100k")
    assert sorted(frame["path"].map(lambda p: p.rsplit(".", 1)[-1])) == ["png", "webp"]
    assert sorted(p.suffix for p in collect_images([tmp_path])) == [".png", ".webp"]


def test_group_pattern():
    from pathlib import Path

    names = [Path("Viable___Case-3-A15-1_1.jpg"), Path("Viable___P9-B12-2_2.jpg"), Path("odd.jpg")]
    assert derive_groups(names, r"___(?P<group>Case-\d+|P\d+)-") == ["Case-3", "P9", "odd"]
    assert derive_groups(names, None) == [p.stem for p in names]


def test_filename_labels_on_real_wsss4luad(shared_data):
    frame = import_filename_labels(shared_data / "wsss4luad/training_examples", ["tumor", "stroma", "non_tumor"],
                                   group_pattern=r"^(\d+)-")
    assert len(frame) == 4
    row = frame[frame.path.str.contains("436219-9328-56427")].iloc[0]
    assert (row.tumor, row.stroma, row.non_tumor) == (1.0, 1.0, 0.0) and math.isnan(row.necrosis)
    assert row.group == "436219"
    assert sorted(frame.group) == ["1003370", "436219", "436219", "449636"]


@pytest.mark.parametrize("name, pattern", [("a.png", "no label list"), ("a-[1, 0].png", "2 label value"),
                                           ("a-[1, 2, 0].png", "'2' in the file name is not 0 or 1")])
def test_filename_label_errors(name, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_filename_labels(name, 3)


def test_tile_positions_cover_the_image():
    assert tile_positions(10, 4, 4) == [0, 4, 6]
    assert tile_positions(8, 4, 2) == [0, 2, 4]
    assert tile_positions(3, 4, 4) == []


def _synthetic(tmp_path):
    """A 20x30 palette mask with regions of known size, and a matching RGB image."""
    mask = np.full((20, 30), 3, np.uint8)  # background
    mask[:, :10] = 0  # tumour: columns 0-9
    mask[:10, 10:20] = 1  # stroma: top of columns 10-19
    mask[10:, 10:20] = 2  # normal: bottom of columns 10-19
    mask[0, 9] = 1  # one stroma pixel inside the tumour tile
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    image.save(tmp_path / "img" / "s.png")
    palette = Image.fromarray(mask)
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    palette.save(tmp_path / "mask" / "s.png")
    return mask, np.asarray(image)


def test_mask_tiles_on_synthetic_palette_mask(tmp_path):
    mask, image = _synthetic(tmp_path)
    frame = tile_masks(tmp_path / "img", tmp_path / "mask", tmp_path / "out", tile_size=10, stride=10,
                       present_at=0.05, absent_below=0.01, max_background=0.5, progress=False)
    # tiles at x=0,10,20 and y=0,10; the two at x=20 are all background and skipped
    assert sorted(zip(frame.x, frame.y)) == [(0, 0), (0, 10), (10, 0), (10, 10)]
    by_pos = {(r.x, r.y): r for r in frame.itertuples()}
    t = by_pos[(0, 0)]
    assert t.frac_tumor == pytest.approx(99 / 100) and t.frac_stroma == pytest.approx(1 / 100)
    # 1 % stroma: between absent_below and present_at -> blank
    assert (t.tumor, t.non_tumor) == (1.0, 0.0) and math.isnan(t.stroma) and math.isnan(t.necrosis)
    t = by_pos[(10, 10)]
    assert t.frac_normal == 1.0 and (t.non_tumor, t.tumor, t.stroma) == (1.0, 0.0, 0.0)
    # the written tile and mask crop hold exactly the source pixels
    np.testing.assert_array_equal(np.asarray(Image.open(t.path)), image[10:20, 10:20])
    np.testing.assert_array_equal(read_mask(t.mask), mask[10:20, 10:20])
    assert Image.open(t.mask).mode == "P"


def test_mask_fractions_and_thresholds_by_hand():
    crop = np.array([[0, 0, 1, 3], [0, 2, 1, 3]], np.uint8)
    fractions = mask_fractions(crop, WSSS4LUAD)
    assert fractions == {"tumor": 3 / 8, "stroma": 2 / 8, "normal": 1 / 8, "background": 2 / 8}
    labels = labels_from_fractions(fractions, WSSS4LUAD, LABELS, present_at=0.2, absent_below=0.1)
    assert labels["tumor"] == 1.0 and labels["stroma"] == 1.0 and math.isnan(labels["non_tumor"])
    with pytest.raises(ValueError, match=r"mask values \[7\]"):
        mask_fractions(np.array([[7]], np.uint8), WSSS4LUAD)


def test_mask_tiles_on_a_real_wsss4luad_mask(shared_data, tmp_path):
    src = shared_data / "wsss4luad/validation"
    for sub in ("img", "mask", "background-mask"):
        (tmp_path / sub).mkdir()
        shutil.copy(src / sub / "09.png", tmp_path / sub / "09.png")  # all four classes occur in 09
    frame = tile_masks(tmp_path / "img", tmp_path / "mask", tmp_path / "out", tile_size=112, stride=56,
                       background_mask_dir=tmp_path / "background-mask", progress=False)
    mask = np.asarray(Image.open(src / "mask/09.png"))
    assert len(frame) > 0
    for r in frame.itertuples():
        crop = mask[r.y:r.y + 112, r.x:r.x + 112]
        assert crop.shape == (112, 112)
        for value, name in enumerate(["tumor", "stroma", "normal", "background"]):
            assert getattr(r, f"frac_{name}") == pytest.approx((crop == value).mean(), abs=1e-6)
        assert (crop == 3).mean() <= 0.5
        for name, label in [("tumor", "tumor"), ("stroma", "stroma"), ("normal", "non_tumor")]:
            f, value = (crop == ["tumor", "stroma", "normal"].index(name)).mean(), getattr(r, label)
            assert value == 1.0 if f >= 0.05 else (value == 0.0 if f < 0.01 else math.isnan(value))
    assert frame["frac_normal"].max() > 0 and frame["non_tumor"].max() == 1


def test_grouped_splits_never_cut_a_group():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"path": [f"p{i}" for i in range(600)],
                          "group": [f"g{g}" for g in rng.integers(0, 60, 600)],
                          "source": rng.choice(["a", "b"], 600)})
    frame["source"] = frame.groupby("group")["source"].transform("first")  # a group belongs to one source
    out = assign_splits(frame, seed=1, stratify_col="source")
    check_groups_disjoint(out)
    assert out.groupby("group")["split"].nunique().max() == 1
    share = out["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.1 and share["val"] > 0.05 and share["test"] > 0.05
    assert set(out[out.source == "a"].split) == {"train", "val", "test"}
    assert out["split"].tolist() == assign_splits(frame, seed=1, stratify_col="source")["split"].tolist()
    assert out["split"].tolist() != assign_splits(frame, seed=2, stratify_col="source")["split"].tolist()
    broken = out.copy()
    broken.loc[broken.index[0], "split"] = "test" if broken.iloc[0].split != "test" else "train"
    with pytest.raises(ValueError, match="span several splits"):
        check_groups_disjoint(broken)
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(frame, fractions=(0.5, 0.2, 0.2))


def test_cli_import_masks_and_check(tmp_path, capsys):
    _synthetic(tmp_path)
    out = tmp_path / "tiles"
    assert main(["data", "import-masks", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "mask"),
                 "--out", str(out), "--tile-size", "10", "--splits", "none"]) == 0
    manifest = read_manifest(out / "manifest.csv")
    assert len(manifest) == 4 and not manifest.frame["path"].str.startswith("/").any()  # relative inside out
    assert main(["data", "check", str(out / "manifest.csv")]) == 0
    assert "all images decode" in capsys.readouterr().out
    tile = manifest.image_paths()[0]
    tile.write_bytes(tile.read_bytes()[:60])
    assert main(["data", "check", str(out / "manifest.csv")]) == 1
    assert "1 unreadable image" in capsys.readouterr().out
    assert main(["data", "import-folders", str(tmp_path / "img"), "--mapping", "nope", "--out", str(tmp_path / "m.csv")]) == 1
    assert "ldcsf data: error: unknown mapping table 'nope'" in capsys.readouterr().err
