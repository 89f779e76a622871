"""Manifest parsing, validation errors and round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.data.manifest import Manifest, label_counts, read_manifest, write_manifest

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        Image.new("RGB", (8, 8), (200, 100 + i, 150)).save(folder / f"img{i}.png")
        names.append(f"imgs/img{i}.png")
    return names


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_manifest_parses_labels_blank_as_nan_and_paths(tmp_path):
    names = _images(tmp_path / "imgs", 3)
    absolute = str((tmp_path / names[2]).resolve())
    csv = _write(tmp_path / "m.csv",
                 "path,stroma,necrosis,non_tumor,tumor,split,group,source\n"
                 f"{names[0]},1,0,,1.0,train,a,x\n"
                 f"{names[1]},0.0,,1,0,val,b,x\n"
                 f"{absolute},,, 1 ,0,train,a,y\n")
    m = read_manifest(csv)
    assert m.labels == LABELS and len(m) == 3 and m.source == csv
    t = m.targets()
    assert t.dtype == np.float32 and t.shape == (3, 4)
    assert t[0].tolist()[:2] == [1.0, 0.0] and math.isnan(t[0, 2]) and t[0, 3] == 1.0
    assert np.isnan(t[2, :2]).all() and t[2, 2] == 1.0
    paths = m.image_paths()
    assert all(p.is_absolute() and p.is_file() for p in paths)
    assert paths[2] == Path(absolute)
    assert m.splits() == ["train", "val"]
    train = m.subset("train")
    assert len(train) == 2 and train.image_paths() == [paths[0], paths[2]]
    assert list(train.frame["group"]) == ["a", "a"]


def test_labels_inferred_from_binary_columns_when_defaults_absent(tmp_path):
    names = _images(tmp_path / "imgs", 2)
    csv = _write(tmp_path / "m.csv", f"path,grade,lymph,notes\n{names[0]},1,,hello\n{names[1]},0,1,5\n")
    m = read_manifest(csv)
    assert m.labels == ["grade", "lymph"]
    m2 = read_manifest(csv, labels=["lymph"])
    assert m2.labels == ["lymph"] and np.isnan(m2.targets()[0, 0])


def test_root_override(tmp_path):
    names = _images(tmp_path / "data" / "imgs", 1)
    csv = _write(tmp_path / "m.csv", f"path,tumor\n{names[0]},1\n")
    with pytest.raises(FileNotFoundError):
        read_manifest(csv, labels=["tumor"])
    m = read_manifest(csv, labels=["tumor"], root=tmp_path / "data")
    assert m.image_paths()[0].is_file()


@pytest.mark.parametrize(
    "text, kwargs, pattern",
    [
        ("file,tumor\na.png,1\n", {}, r"m\.csv: manifest has no 'path' column"),
        ("path,tumor\nimgs/img0.png,1\n", {"labels": ["tumor", "stroma"]}, r"m\.csv: missing label column\(s\) stroma"),
        ("path,tumor\nimgs/img0.png,1\nimgs/img1.png,yes\n", {"labels": ["tumor"]},
         r"m\.csv: row 3, column 'tumor': unknown label value 'yes'"),
        ("path,tumor\nimgs/img0.png,2\n", {"labels": ["tumor"]}, r"row 2, column 'tumor': unknown label value '2'"),
        ("path,tumor\nimgs/img0.png,1\nimgs/nope1.png,1\nimgs/nope2.png,0\n", {"labels": ["tumor"]},
         r"m\.csv: 2 image\(s\) not found, e\.g\. .*nope1\.png, .*nope2\.png"),
    ],
)
def test_read_manifest_errors_are_one_line_and_name_the_file(tmp_path, text, kwargs, pattern):
    _images(tmp_path / "imgs", 2)
    csv = _write(tmp_path / "m.csv", text)
    with pytest.raises((ValueError, FileNotFoundError), match=pattern) as info:
        read_manifest(csv, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_files_ignored_when_not_checked(tmp_path):
    csv = _write(tmp_path / "m.csv", "path,tumor\nnope.png,1\n")
    assert len(read_manifest(csv, labels=["tumor"], check_files=False)) == 1
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv")


def test_write_manifest_round_trip_keeps_blanks_and_integers(tmp_path):
    names = _images(tmp_path / "imgs", 2)
    frame = pd.DataFrame({"path": names, "stroma": [1.0, np.nan], "necrosis": [np.nan, np.nan],
                          "non_tumor": [0.0, 1.0], "tumor": [1.0, 0.0], "frac_tumor": [0.25, 0.0],
                          "split": ["train", "test"]})
    out = write_manifest(frame, tmp_path / "out.csv")
    lines = out.read_text().splitlines()
    assert lines[1] == f"{names[0]},1,,0,1,0.25,train"
    assert not list(tmp_path.glob(".out.csv*"))  # no temp file left behind
    m = read_manifest(out)
    np.testing.assert_array_equal(m.targets(), frame[LABELS].to_numpy(np.float32))
    write_manifest(m, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == out.read_text()
    counts = label_counts(m).set_index("split")
    # "-": no image of the split annotates the label (0 annotated)
    assert counts.loc["train", "stroma"] == "1/1" and counts.loc["test", "necrosis"] == "-"
    assert counts.loc["all", "images"] == 2 and counts.loc["all", "tumor"] == "1/2"


def test_subset_without_split_column_errors(tmp_path):
    m = Manifest(frame=pd.DataFrame({"path": ["a.png"], "tumor": [1.0]}), root=tmp_path, labels=["tumor"])
    with pytest.raises(ValueError, match="no 'split' column"):
        m.subset("train")
    assert m.splits() == []
