"""`ldcsf info` on the real shared slides (two Aperio SVS, a DICOM series built from one of
them, the non-conformant TCGA DICOM file): what each slide is, or its one-line error."""

from __future__ import annotations

import json

import pytest

from ldcsf.cli.main import main
from ldcsf.wsi.slide_info import MPP_FROM_FILE, MPP_FROM_OVERRIDE, MPP_FROM_POWER, slide_info
from test_wsi_dicom import dicom_folder  # noqa: F401 - the DICOM series fixture

CMU = "slides/CMU-1-Small-Region.svs"
TCGA = "slides/TCGA-CR-7395-01A-01-TS1.svs"
SPARSE = "slides/TCGA-XK-AAJU-01A-01-TS1-sparse.dcm"


def test_info_prints_dimensions_levels_and_where_the_mpp_comes_from(shared_data, dicom_folder, capsys):  # noqa: F811
    assert main(["info", str(shared_data / CMU), str(shared_data / TCGA), str(dicom_folder)]) == 0
    out = capsys.readouterr().out
    cmu, rest = out.split(str(shared_data / TCGA))  # each slide's block starts with its path
    tcga, dicom = rest.split(str(dicom_folder))
    assert "2220 x 2967 px" in cmu and "0.499 (file metadata)" in cmu and "20x" in cmu
    assert "label             387 x 463" in cmu  # an associated image, sized without decoding it
    assert "4443 x 3567 px" in tcga and "none (ldcsf slide needs --mpp)" in tcga
    assert "1      2221 x 1783  2.001" in tcga  # the second level and its downsample
    assert "dicom (2 files)" in dicom and "0.499 (file metadata)" in dicom


def test_info_json_and_mpp_override(shared_data, capsys):
    assert main(["info", "--json", "--mpp", "0.25", str(shared_data / TCGA)]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["dimensions"] == [4443, 3567] and record["format"] == "openslide"
    assert [level["dimensions"] for level in record["levels"]] == [[4443, 3567], [2221, 1783]]
    assert record["mpp"] == 0.25 and record["mpp_source"] == MPP_FROM_OVERRIDE and record["file_mpp"] is None
    info = slide_info(shared_data / CMU)
    assert (info.mpp, info.mpp_source, info.vendor) == (pytest.approx(0.499), MPP_FROM_FILE, "aperio")
    assert dict(info.properties)["aperio.AppMag"] == "20"


def test_without_a_file_mpp_the_objective_power_gives_an_estimate(shared_data, tmp_path, capsys):
    """The CMU slide with its Aperio `MPP` entry taken out of the header: only `AppMag = 20` is left."""
    import tifffile

    slide = tmp_path / "no_mpp.svs"
    slide.write_bytes((shared_data / CMU).read_bytes())
    description = tifffile.tiffcomment(slide)
    tifffile.tiffcomment(slide, comment=description.replace("|MPP = 0.4990", ""))
    info = slide_info(slide)
    assert (info.mpp, info.mpp_source, info.file_mpp, info.objective_power) == (0.5, MPP_FROM_POWER, None, 20.0)
    assert main(["info", str(slide)]) == 0
    assert "0.5 (objective power estimate); ldcsf slide needs --mpp" in capsys.readouterr().out


def test_a_bad_slide_prints_its_one_line_error_and_the_others_go_on(shared_data, tmp_path, capsys):
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    code = main(["info", str(shared_data / SPARSE), str(text), str(tmp_path / "missing.svs"), str(shared_data / CMU)])
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert code == 1 and len(errors) == 3
    assert errors[0].startswith(f"ldcsf info: error: {shared_data / SPARSE}: not a conformant DICOM whole-slide image")
    assert errors[1].startswith(f"ldcsf info: error: {text}: not a readable slide")
    assert errors[2] == f"ldcsf info: error: {tmp_path / 'missing.svs'}: slide not found"
    assert "2220 x 2967 px" in captured.out  # the good slide after the bad ones
    assert main(["info", "--json", str(text)]) == 1
    assert json.loads(capsys.readouterr().out)[0]["error"].startswith(f"{text}: not a readable slide")
