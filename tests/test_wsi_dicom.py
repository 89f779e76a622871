"""DICOM whole-slide images: a conformant series built from the real CMU slide, and a real
non-conformant TCGA file that must be refused in one line saying what it lacks."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.cli.main import main
from ldcsf.wholeslide import collect_slides, slide_id_for
from ldcsf.wsi import open_slide
from system_packages import require_turbojpeg

CMU = "slides/CMU-1-Small-Region.svs"
SPARSE = "slides/TCGA-XK-AAJU-01A-01-TS1-sparse.dcm"
CONTAINER_ID = "CMU-1 slide 7"


@pytest.fixture(scope="module")
def dicom_folder(shared_data, tmp_path_factory):
    """The CMU slide as a DICOM WSI series: its level and its thumbnail, one file each.

    wsidicomizer copies the JPEG tiles as they are. (Its generated lower levels are left out:
    their partial edge frames are refused by OpenSlide, so they would test the converter.)
    """
    require_turbojpeg()
    wsidicomizer = pytest.importorskip("wsidicomizer", reason="wsidicomizer (pip) builds the DICOM test slide")

    def set_container(dataset, metadata):
        dataset.ContainerIdentifier = CONTAINER_ID
        return dataset

    folder = tmp_path_factory.mktemp("dicom") / "cmu_series"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = wsidicomizer.WsiDicomizer.convert(
            shared_data / CMU, folder, include_label=False, include_overview=False,
            metadata_post_processor=set_container,
        )
    assert len(files) == 2  # the full-resolution level and the thumbnail
    return folder


def test_a_dicom_series_reads_as_the_original_slide(shared_data, dicom_folder):
    with open_slide(shared_data / CMU) as original, open_slide(dicom_folder) as dicom:
        assert dicom.dimensions == original.dimensions == (2220, 2967)
        assert dicom.mpp == pytest.approx(original.mpp, rel=1e-6) and dicom.mpp == pytest.approx(0.499)
        assert dicom.level_dimensions == original.level_dimensions
        for x, y in ((0, 0), (900, 1400), (2000, 2800)):
            a = original.read_region((x, y), 0, (200, 150)).astype(int)
            b = dicom.read_region((x, y), 0, (200, 150)).astype(int)
            assert np.abs(a - b).mean() < 1.0  # the same JPEG tiles, not re-encoded
        thumb_dicom, _ = dicom.thumbnail(512)
        thumb_original, _ = original.thumbnail(512)
        assert np.abs(np.asarray(thumb_dicom, int) - np.asarray(thumb_original, int)).mean() < 1.0


def test_a_series_is_one_slide_named_by_its_container(dicom_folder):
    files = sorted(dicom_folder.iterdir())
    assert collect_slides([dicom_folder]) == collect_slides([files[0]]) == collect_slides(files)
    assert len(collect_slides([dicom_folder])) == 1
    assert {slide_id_for(p) for p in [dicom_folder, *files]} == {"CMU-1 slide 7"}


def test_ldcsf_slide_runs_on_a_dicom_folder(dicom_folder, tmp_path, capsys):
    model = create_model("ldcsf_swin_micro")
    checkpoint = save_checkpoint(tmp_path / "micro.pt", model, CheckpointMeta.for_model(model, mpp=2.0))
    out = tmp_path / "out"
    argv = ["slide", str(dicom_folder), "--checkpoint", str(checkpoint), "--out", str(out), "--limit-tiles", "12",
            "--num-workers", "0", "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    cohort = pd.read_csv(out / "cohort.csv")
    assert cohort["slide_id"].tolist() == ["CMU-1 slide 7"] and cohort["status"].tolist() == ["ok"]
    result = json.loads((out / "CMU-1 slide 7" / "tsr.json").read_text())
    assert result["mpp"] == pytest.approx(0.499) and result["dimensions"] == [2220, 2967]
    # any one file of the series is the same slide: the finished result is reused
    one_file = sorted(dicom_folder.iterdir())[0]
    assert main(["slide", str(one_file), *argv[2:]]) == 0
    assert pd.read_csv(out / "cohort.csv")["status"].tolist() == ["skipped"]


def test_a_non_conformant_dicom_is_refused_in_one_line(shared_data, tmp_path, capsys):
    model = create_model("ldcsf_swin_micro")
    checkpoint = save_checkpoint(tmp_path / "micro.pt", model, CheckpointMeta.for_model(model, mpp=2.0))
    code = main(["slide", str(shared_data / SPARSE), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                 "--no-progress", "--num-workers", "0"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ldcsf slide")]
    assert code == 1 and len(err) == 1
    assert f"{shared_data / SPARSE}: not a conformant DICOM whole-slide image; it lacks ImageType" in err[0]
    for missing in ("DimensionOrganizationType", "per-frame positions"):
        assert missing in err[0]
