"""The pan-cancer manifest built from the real shared H&E images."""

from __future__ import annotations

import pytest

from ldcsf.cli.main import main
from ldcsf.data.manifest import label_counts, read_manifest


@pytest.fixture(scope="module")
def pancancer(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pancancer")
    assert main(["data", "pancancer", "--shared", str(shared_data), "--out", str(out)]) == 0
    return read_manifest(out / "manifest.csv"), out


def test_counts_per_source(pancancer, shared_data):
    manifest, _ = pancancer
    counts = manifest.frame["dataset"].value_counts().to_dict()
    expected_files = {"nct_crc": 42, "oral": 1224, "osteosarcoma": 60, "lc25000": 100, "liver_chol": 6, "wsss4luad_names": 4}
    for name, n in expected_files.items():
        assert counts[name] == n
    assert counts["wsss4luad_masks"] > 100
    frame = manifest.frame
    assert manifest.labels == ["stroma", "necrosis", "non_tumor", "tumor"]
    assert manifest.splits() == ["test", "train", "val"]
    oscc = frame[(frame.dataset == "oral") & (frame.source_class == "OSCC")]
    assert len(oscc) == 934 and (oscc.tumor == 1).all() and oscc.non_tumor.isna().all()
    nvt = frame[frame.source_class == "Non-Viable-Tumor"]
    assert len(nvt) == 20 and (nvt.necrosis == 1).all()
    assert set(frame[frame.dataset == "osteosarcoma"].group) == {"osteosarcoma:Case-3", "osteosarcoma:Case-4",
                                                                  "osteosarcoma:Case-48", "osteosarcoma:P9"}
    lc = frame[frame.dataset == "lc25000"]
    assert (lc[lc.source_class.str.endswith("_n")].tumor == 0).all()
    # shared images are referenced, never copied; mask tiles are written into the output folder
    assert frame[frame.dataset == "oral"].path.str.startswith(str(shared_data.resolve())).all()
    tiles = frame[frame.dataset == "wsss4luad_masks"]
    assert not tiles.path.str.startswith("/").any() and all(p.is_file() for p in manifest.subset("train").image_paths())


def test_no_group_spans_two_splits(pancancer):
    frame = pancancer[0].frame
    assert frame.groupby("group")["split"].nunique().max() == 1
    assert frame.groupby("group")["dataset"].nunique().max() == 1
    tile_groups = frame[frame.dataset == "wsss4luad_masks"].groupby("group")["split"].nunique()
    assert 25 <= len(tile_groups) <= 31 and tile_groups.max() == 1  # tiles of one image stay together
    share = frame["split"].value_counts(normalize=True)
    assert 0.6 < share["train"] < 0.8


def test_summary_table(pancancer):
    manifest, _ = pancancer
    table = label_counts(manifest, by="dataset")
    total = table[table.dataset == "all"].iloc[0]
    assert total.images == len(manifest)
    assert table[table.dataset != "all"]["images"].sum() == len(manifest)
    row = table[(table.dataset == "liver_chol")].iloc[0]
    assert row.tumor == "6/6" and row.stroma == "-"
