"""QuPath annotations as training data, and fine-tuning a trained checkpoint on them (real GlaS images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf.cli.main import main
from ldcsf.data.area_targets import cell_fractions
from ldcsf.data.masks import WSSS4LUAD, read_mask
from ldcsf.data.qupath import features_from_mask, tile_annotated_slide, write_geojson

GLAS_MPP = 0.62005
NAMES = {255: "Tumor", 0: "Stroma"}  # a malignant GlaS image: gland = tumour, the rest stroma


@pytest.fixture(scope="module")
def glas(shared_data: Path) -> Path:
    folder = shared_data / "glas"
    if not (folder / "manifest.csv").is_file():
        pytest.skip(f"GlaS images not found in {folder}")
    return folder


def annotate(glas: Path, stem: str, out: Path, names=NAMES) -> tuple[Path, np.ndarray]:
    """The GlaS mask of `stem` as a QuPath GeoJSON export named after its image."""
    mask = read_mask(glas / "masks" / f"{stem}.png")
    return write_geojson(features_from_mask(mask, names), out / f"{stem}.geojson"), mask


def test_tiles_carry_the_masks_area_fractions(glas: Path, tmp_path: Path) -> None:
    geojson, mask = annotate(glas, "testA_2", tmp_path)
    # 96 px at 0.875 µm/px: each tile covers 135 image pixels, so polygons are rasterised at another scale.
    rows = tile_annotated_slide(glas / "images" / "testA_2.jpg", geojson, tmp_path / "out", tile_px=96, mpp=0.875,
                                slide_mpp=GLAS_MPP)
    assert len(rows) >= 8
    extent = 135
    for row in rows.itertuples():
        crop = mask[row.y:row.y + extent, row.x:row.x + extent]
        assert row.frac_tumor == pytest.approx((crop == 255).mean(), abs=0.02)
        assert row.frac_stroma == pytest.approx((crop == 0).mean(), abs=0.02)
        assert row.frac_unannotated == 0
        # The tile's mask gives the area head the same shares per cell.
        tile_mask = read_mask(row.mask)
        assert tile_mask.shape == (96, 96)
        cells = cell_fractions(tile_mask, (2, 2), ["stroma", "tumor"], WSSS4LUAD)
        truth = torch.tensor([[[(crop[i * 67:(i + 1) * 68, j * 67:(j + 1) * 68] == v).mean() for j in range(2)]
                               for i in range(2)] for v in (0, 255)], dtype=torch.float32)
        assert torch.allclose(cells, truth, atol=0.05)


def test_unannotated_pixels_are_not_negative(glas: Path, tmp_path: Path) -> None:
    mask = read_mask(glas / "masks" / "testA_2.png")
    # Only the tumour is drawn: stroma is nowhere annotated, so it is never called absent.
    geojson = write_geojson(features_from_mask(mask, {255: "Tumor"}), tmp_path / "testA_2.geojson")
    rows = tile_annotated_slide(glas / "images" / "testA_2.jpg", geojson, tmp_path / "out", tile_px=128, mpp=GLAS_MPP,
                                slide_mpp=GLAS_MPP, min_annotated=0.5)
    assert len(rows) and rows["stroma"].isna().all()
    assert (rows["frac_unannotated"] <= 0.5).all() and (rows["tumor"] == 1).all()
    cells = cell_fractions(read_mask(rows["mask"].iloc[0]), (4, 4), ["stroma", "tumor"], WSSS4LUAD)
    known = ~torch.isnan(cells[1])
    assert known.any() and torch.allclose(cells[1][known], torch.ones_like(cells[1][known]))


def cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_annotations_get_one_line(glas: Path, tmp_path: Path, capsys) -> None:
    image = str(glas / "images" / "testA_2.jpg")
    args = ["data", "qupath", image, "--mpp", str(GLAS_MPP), "--out", str(tmp_path / "out"), "--annotations"]

    unknown = write_geojson(features_from_mask(read_mask(glas / "masks" / "testA_2.png"), {255: "Tumour cells"}),
                            tmp_path / "unknown.geojson")
    message = cli_error(args + [str(unknown)], capsys)
    assert "unknown class 'Tumour cells'" in message and "stroma" in message and "unknown.geojson" in message

    outside = tmp_path / "outside.geojson"
    square = [[[5000, 5000], [5100, 5000], [5100, 5100], [5000, 5100], [5000, 5000]]]
    outside.write_text(json.dumps([{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
                                    "properties": {"classification": {"name": "Tumor"}}}]))
    message = cli_error(args + [str(outside)], capsys)
    assert "outside the slide testA_2.jpg (589x453 px)" in message

    for text, says in [('{"type": "Polygon", "coordinates": []}', "not QuPath's GeoJSON"),
                       ("{not json", "not a GeoJSON file"),
                       ('[{"type": "Feature", "properties": {}}]', "not a GeoJSON Feature with a geometry")]:
        bad = tmp_path / "bad.geojson"
        bad.write_text(text)
        assert says in cli_error(args + [str(bad)], capsys)

    good, _ = annotate(glas, "testA_2", tmp_path)
    no_mpp = ["data", "qupath", image, "--out", str(tmp_path / "out"), "--annotations", str(good)]
    assert "no microns-per-pixel" in cli_error(no_mpp, capsys)


def test_init_from_keeps_labels_and_input_and_changes_the_heads(glas: Path, tmp_path: Path) -> None:
    from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from ldcsf.models import create_model

    torch.manual_seed(0)
    start = create_model("ldcsf_swin_micro", area_head=True)
    start_file = save_checkpoint(tmp_path / "start.pt", start, CheckpointMeta.for_model(start, mpp=1.2,
                                                                                         thresholds=[0.3] * 4))
    annotations = tmp_path / "annotations"
    for stem in ("testA_2", "testA_3", "testA_5"):
        annotate(glas, stem, annotations)
    slides = [str(glas / "images" / f"{s}.jpg") for s in ("testA_2", "testA_3", "testA_5")]
    data = tmp_path / "data"
    assert main(["data", "qupath", *slides, "--annotations", str(annotations), "--mpp", str(GLAS_MPP),
                 "--model", str(start_file), "--out", str(data)]) == 0
    manifest = pd.read_csv(data / "manifest.csv")
    assert set(manifest["split"]) == {"train", "val"}
    assert main(["train", "--init-from", str(start_file), "--data", str(data / "manifest.csv"), "--epochs", "2",
                 "--batch-size", "8", "--num-workers", "0", "--no-progress", "--accelerator", "cpu",
                 "--out", str(tmp_path / "run")]) == 0

    before, after = load_checkpoint(start_file), load_checkpoint(tmp_path / "run" / "model.pt")
    for field in ("labels", "model_name", "model_kwargs", "input_size", "mpp", "mean", "std", "interpolation"):
        assert getattr(after.meta, field) == getattr(before.meta, field), field
    assert after.meta.extra["adapted_from"]["weights_sha256"] == before.weights_sha256
    old, new = before.model.state_dict(), after.model.state_dict()
    backbone = {f"backbone.{k}" for k in before.model.backbone_module().state_dict()} & set(old)
    assert backbone and all(torch.equal(old[k], new[k]) for k in backbone)  # frozen
    assert any(not torch.equal(old[k], new[k]) for k in set(old) - backbone)  # the heads learnt


def test_only_classified_annotations_are_read(glas: Path, tmp_path: Path) -> None:
    """An export holding ldcsf's own tiles (imported into QuPath) next to the drawn regions reads the regions only."""
    from ldcsf.data.qupath import read_regions

    features = features_from_mask(read_mask(glas / "masks" / "testA_2.png"), NAMES)
    tile = {"type": "Feature", "properties": {"objectType": "tile", "classification": {"name": "non_tumor"}},
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [64, 0], [64, 64], [0, 64], [0, 0]]]}}
    point = {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
             "geometry": {"type": "Point", "coordinates": [10, 10]}}
    unclassified = dict(features[0], properties={"objectType": "annotation"})
    path = tmp_path / "export.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [tile, point, unclassified, *features]}))
    regions = read_regions(path)
    assert [r.class_name for r in regions] == ["Tumor", "Stroma"]
    assert sum(r.geometry.area for r in regions) == pytest.approx(589 * 453)  # every pixel, exactly once


def test_adaptation_benchmark_scores_before_and_after(glas: Path, tmp_path: Path, shared_data: Path) -> None:
    import subprocess
    import sys

    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
    from ldcsf.models import create_model

    start = create_model("ldcsf_swin_micro", area_head=True)
    base = save_checkpoint(tmp_path / "start.pt", start, CheckpointMeta.for_model(start, mpp=2.0))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptation.py"
    subprocess.run([sys.executable, str(script), "--base", str(base), "--sources", "glas", "--sizes", "2", "--draws",
                    "1", "--epochs", "1", "--max-held-out", "4", "--threads", "1", "--data", str(shared_data),
                    "--work", str(tmp_path / "work"), "--out", str(tmp_path / "adaptation")], check=True,
                   capture_output=True, timeout=300)
    entry = json.loads((tmp_path / "adaptation.json").read_text())["entries"][0]
    assert entry["annotated_images"] == 2 and entry["held_out_images"] == 4
    assert entry["after_mae"] != entry["before_mae"] and 0 <= entry["after_mae"] <= 1
    assert entry["seconds"] > 0 and entry["cpu_seconds"] > 0
