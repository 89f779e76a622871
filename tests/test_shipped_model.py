"""The model that ships with ldcsf: its file matches its card, it reproduces the card's test-split
metrics, and `ldcsf slide` uses it when no --checkpoint is given."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ldcsf.cli.main import main
from ldcsf.evaluation.evaluate import evaluate
from ldcsf.models.packaged_weights import file_sha256
from ldcsf.options import PredictOptions
from ldcsf.shipped import SHIPPED_DIR, SHIPPED_NAME, load_shipped, read_card

TOOLS = Path(__file__).resolve().parents[1] / "tools"
CMU = "slides/CMU-1-Small-Region.svs"
CPU = PredictOptions(accelerator="cpu", devices=1, num_workers=0, batch_size=32, progress=False)


def test_the_weights_file_has_the_digest_its_card_states():
    card = read_card()
    assert card["name"] == SHIPPED_NAME and card["version"]
    weights = SHIPPED_DIR / card["weights"]
    assert file_sha256(weights) == card["sha256"]
    assert weights.stat().st_size < 8e6  # heads only: the backbone comes from its own package
    loaded = load_shipped()
    assert loaded.meta.labels == card["labels"] and loaded.meta.thresholds == pytest.approx(card["thresholds"], abs=1e-6)
    assert loaded.meta.mpp == card["mpp"] and loaded.weights_sha256 == card["sha256"]


def test_the_shipped_model_is_the_current_recommended_recipe():
    """When the recommended recipe changes, `make model` rebuilds the shipped model and its card."""
    sys.path.insert(0, str(TOOLS.parent / "benchmarks"))
    try:
        from _recipe import RECIPES, RECOMMENDED
    finally:
        sys.path.remove(str(TOOLS.parent / "benchmarks"))
    card = read_card()
    assert card["recipe"] == RECOMMENDED
    assert card["recipe_settings"] == json.loads(json.dumps(RECIPES[RECOMMENDED])), "run `make model`"


def test_the_shipped_model_trains_on_both_masked_sources():
    """WSSS4LUAD's and GlaS's masks are where stroma areas are learnt (lung and colon); nothing is left out,
    and the weights carry both sources' terms."""
    sys.path.insert(0, str(TOOLS))
    try:
        import build_shipped_model as build
    finally:
        sys.path.remove(str(TOOLS))
    trained_on = {s.name for s in build.shipped_sources()}
    assert {"wsss4luad_masks", "wsss4luad_names", "glas"} <= trained_on
    card = read_card()
    assert card["excluded_sources"] == {}
    assert card["weights_licence"].startswith("research use only, not for clinical or commercial use")
    assert "glas (test split)" in card["results_by_source"]
    calibration = card["meta"]["interval_calibration"]
    assert calibration["scale"] == "fraction" and 0 < calibration["margin"] < 0.5


def test_a_changed_weights_file_is_refused_naming_it(tmp_path):
    folder = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, folder)
    weights = folder / read_card()["weights"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{weights.name}: SHA-256 .* differs from its card"):
        load_shipped(folder)


def test_the_shipped_model_reproduces_the_cards_test_metrics(shared_data, tmp_path):
    sys.path.insert(0, str(TOOLS))
    try:
        import build_shipped_model as build
    finally:
        sys.path.remove(str(TOOLS))
    card = read_card()
    manifest = build.build_data(build.parse_args(["--shared", str(shared_data), "--work", str(tmp_path)]))
    report = evaluate(load_shipped(), manifest, tmp_path / "eval", split="test", options=CPU).report.to_dict()
    expected, tolerance = card["test"], card["test"]["tolerance"]
    assert report["summary"]["images"] == expected["images"] == expected["summary"]["images"]
    for name in ("mAP", "macro_auroc", "mean_accuracy", "micro_f1"):
        assert report["summary"][name] == pytest.approx(expected["summary"][name], abs=tolerance), name
    for label, row in expected["per_label"].items():
        for name in ("accuracy", "auroc"):
            if row[name] is not None and not math.isnan(row[name]):
                assert report["per_label"][label][name] == pytest.approx(row[name], abs=tolerance), (label, name)


def test_slide_without_a_checkpoint_uses_the_shipped_model(shared_data, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["slide", str(shared_data / CMU), "--out", str(out), "--accelerator", "cpu", "--num-workers", "0"]) == 0
    card = read_card()
    assert f"using the shipped model {card['name']} {card['version']}" in capsys.readouterr().err
    slide = out / "CMU-1-Small-Region"
    assert (slide / "report.html").stat().st_size > 10_000
    tsr = json.loads((slide / "tsr.json").read_text())
    assert tsr["tsr"]["n_tiles"] > 10 and 0.0 <= tsr["tsr"]["stroma_fraction"] <= 1.0
    # CMU-1's dermis is mostly collagen: a model trained without stroma masks saw 3 % stroma here
    assert tsr["tsr"]["stroma_fraction"] > 0.5
    assert tsr["settings"]["checkpoint"].endswith(card["weights"])
    assert json.loads((slide / "inputs.json").read_text())["checkpoint"]["weights_sha256"] == card["sha256"]


def test_predict_gives_each_tiles_area_shares_and_stroma_fraction(shared_data, tmp_path):
    import pandas as pd

    tiles = sorted((shared_data / "nct_crc").glob("STR-*")) + sorted((shared_data / "nct_crc").glob("TUM-*"))
    background = next((shared_data / "nct_crc").glob("BACK-*"))  # glass: neither stroma nor tumour
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "preds.csv"
    assert main(["predict", *map(str, tiles), str(background), str(broken), "--out", str(out), "--accelerator", "cpu",
                 "--num-workers", "0", "--runtime", "torch", "--no-progress"]) == 0
    glass = pd.read_csv(out).iloc[-2]
    assert glass["stroma_area"] + glass["tumor_area"] < 0.05 and pd.isna(glass["stroma_fraction"])
    table = pd.read_csv(out).drop(index=len(tiles))
    labels = read_card()["labels"]
    areas = table[[f"{label}_area" for label in labels]]
    known = areas.iloc[:-1].to_numpy()
    # The area heads share each cell with a "none" class: shares lie in [0, 1] and sum to at most 1.
    assert ((known >= 0) & (known <= 1)).all() and (known.sum(1) <= 1 + 1e-5).all()
    assert areas.iloc[-1].isna().all() and pd.isna(table["stroma_fraction"].iloc[-1])  # the unreadable file
    fraction = table["stroma_fraction"].iloc[:-1].to_numpy()
    s, t = table["stroma_area"].iloc[:-1].to_numpy(), table["tumor_area"].iloc[:-1].to_numpy()
    assert fraction == pytest.approx(s / (s + t), abs=1e-5)
    stroma_tiles = table["path"].iloc[:-1].str.contains("/STR-").to_numpy()
    # Cancer-associated stroma of another colorectal cohort against its tumour tiles, tile by tile.
    assert fraction[stroma_tiles].min() > fraction[~stroma_tiles].max()


def test_models_lists_the_shipped_model_with_name_and_version(capsys):
    assert main(["models"]) == 0
    card = read_card()
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith(card["name"]))
    assert card["version"] in line.split()


def test_exported_runtimes_of_the_shipped_model_go_to_a_user_cache(tmp_path, monkeypatch):
    from ldcsf.inference.exported import onnx_path_for
    from ldcsf.shipped import export_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    loaded = load_shipped()
    path = onnx_path_for(loaded.path, loaded.export_dir)
    # One folder per weights' digest: two installed versions never overwrite each other's export.
    digest_folder = tmp_path / "ldcsf" / "shipped" / loaded.weights_sha256[:16]
    assert path == digest_folder / f"{SHIPPED_NAME}.onnx" and path.parent.is_dir()
    assert export_cache_dir(loaded.weights_sha256) == digest_folder
    assert not any(SHIPPED_DIR.glob("*.onnx"))


def odd_tiles(side: int) -> dict[str, np.ndarray]:
    """Tiles a slide can hand the model where its in-model Macenko view has no stain to estimate:
    glass, black, one flat colour, pen ink, a few stained pixels on glass, two flat colours, noise."""
    rng = np.random.default_rng(0)
    flat = lambda rgb: np.broadcast_to(np.array(rgb, np.uint8), (side, side, 3))  # noqa: E731
    halves = np.where(np.arange(side)[None, :, None] < side // 2, [200, 90, 160], [120, 50, 150])
    return {"glass": flat([246, 246, 246]), "black": flat([0, 0, 0]), "grey": flat([128, 128, 128]),
            "eosin only": flat([230, 120, 180]), "green pen": flat([20, 160, 60]), "red": flat([255, 0, 0]),
            "a few stained pixels": np.where(rng.random((side, side, 1)) < 0.01, [120, 60, 150], [250, 250, 250]),
            "two flat colours": np.broadcast_to(halves, (side, side, 3)),
            "noise": rng.integers(0, 256, (side, side, 3)), "black and white": rng.choice([0, 255], (side, side, 1))
            * np.ones(3, int)}


def test_tiles_without_stain_give_finite_outputs_that_the_export_reproduces(tmp_path):
    """The shipped model normalises each tile's stains itself (its Macenko heads): a tile with no
    stain to estimate must still give finite probabilities and areas, in PyTorch and on ONNX Runtime."""
    import torch

    from ldcsf.inference.exported import OnnxRuntimeModel, export_onnx
    from ldcsf.inference.runtimes import AUTO_TOLERANCE

    loaded = load_shipped()
    spec = loaded.meta.input_spec
    tiles = odd_tiles(int(spec.size))
    x = torch.from_numpy(np.stack([t.astype(np.float32) for t in tiles.values()])).permute(0, 3, 1, 2) / 255
    x = (x - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    model = loaded.model.eval()
    with torch.inference_mode():
        logits, areas = model.forward_with_areas(x)
        members, _ = model.forward_members(x)
    for name, row, area in zip(tiles, logits, areas):
        assert torch.isfinite(row).all() and torch.isfinite(area).all(), name
    assert torch.isfinite(members).all()
    exported = OnnxRuntimeModel(export_onnx(loaded, tmp_path / "shipped.onnx", check=False))
    with torch.inference_mode():
        onnx_logits, onnx_areas = exported.forward_with_areas(x)
    assert torch.isfinite(onnx_logits).all() and torch.isfinite(onnx_areas).all()
    # Flat tiles are where float rounding decides the stain estimate: a looser bound than on tissue.
    assert (onnx_logits - logits).abs().max() < 100 * AUTO_TOLERANCE
