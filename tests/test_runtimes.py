"""Exported runtimes (ONNX Runtime, OpenVINO): same numbers as PyTorch, on tiles and on a real slide."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.cli.main import main
from ldcsf.inference.exported import EXPORT_TOLERANCE, exported_sha, file_sha256, onnx_path_for
from ldcsf.inference.runtimes import check_runtime_device, runtime_model

pytest.importorskip("onnxruntime", reason="the runtimes extra (onnxruntime) is not installed")
pytest.importorskip("openvino", reason="the runtimes extra (openvino) is not installed")

CMU = "slides/CMU-1-Small-Region.svs"


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro")
    return save_checkpoint(tmp_path / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.25))


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_exported_runtimes_match_pytorch(checkpoint, runtime):
    loaded = load_checkpoint(checkpoint)
    engine = runtime_model(loaded, runtime, threads=1)
    assert onnx_path_for(checkpoint).is_file() and exported_sha(onnx_path_for(checkpoint)) == file_sha256(checkpoint)
    assert engine.labels == loaded.meta.labels and engine.img_size == (64, 64)
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(3))  # not the export's batch size
    with torch.inference_mode():
        want = torch.sigmoid(loaded.model(x))
    got = torch.sigmoid(engine(x))
    assert got.shape == want.shape == (5, 4)
    assert float((got - want).abs().max()) <= EXPORT_TOLERANCE


def test_export_command_and_stale_export_is_remade(checkpoint, capsys):
    assert main(["export", "--checkpoint", str(checkpoint)]) == 0
    onnx_file = onnx_path_for(checkpoint)
    assert str(onnx_file) in capsys.readouterr().out
    first_sha = exported_sha(onnx_file)
    # New weights under the same name: the old export must not be used for them.
    torch.manual_seed(1)
    other = create_model("ldcsf_swin_micro")
    save_checkpoint(checkpoint, other, CheckpointMeta.for_model(other, mpp=1.25))
    engine = runtime_model(load_checkpoint(checkpoint), "onnx", threads=1)
    assert exported_sha(onnx_file) == file_sha256(checkpoint) != first_sha
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert float((torch.sigmoid(engine(x)) - torch.sigmoid(other.eval()(x))).abs().max()) <= EXPORT_TOLERANCE


def test_cli_choices_are_the_runtimes():
    from ldcsf.cli.export import RUNTIME_CHOICES
    from ldcsf.inference.runtimes import AUTO, RUNTIMES

    assert RUNTIME_CHOICES == (AUTO, *RUNTIMES)


def test_exported_runtimes_refuse_a_gpu():
    with pytest.raises(ValueError, match="--runtime onnx runs on the CPU"):
        check_runtime_device("onnx", "gpu")
    check_runtime_device("torch", "gpu")  # PyTorch runs anywhere


def test_slide_with_onnx_runtime_gives_the_torch_tile_table(shared_data, checkpoint, tmp_path):
    common = ["slide", str(shared_data / CMU), "--checkpoint", str(checkpoint), "--limit-tiles", "40",
              "--batch-size", "16", "--num-workers", "0", "--threads", "1", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "torch")]) == 0
    assert main([*common, "--out", str(tmp_path / "onnx"), "--runtime", "onnx"]) == 0
    torch_tiles = pd.read_parquet(tmp_path / "torch" / "CMU-1-Small-Region" / "tiles.parquet")
    onnx_tiles = pd.read_parquet(tmp_path / "onnx" / "CMU-1-Small-Region" / "tiles.parquet")
    assert len(onnx_tiles) == len(torch_tiles) == 40
    probs = [c for c in torch_tiles.columns if c.startswith("prob_")]
    assert (onnx_tiles[["x", "y"]].to_numpy() == torch_tiles[["x", "y"]].to_numpy()).all()
    assert (onnx_tiles[probs] - torch_tiles[probs]).abs().to_numpy().max() <= EXPORT_TOLERANCE


def test_predict_with_openvino_matches_torch(shared_data, checkpoint, tmp_path):
    images = sorted((shared_data / "nct_crc").glob("*.tif"))[:6]
    common = ["predict", *map(str, images), "--checkpoint", str(checkpoint), "--accelerator", "cpu",
              "--num-workers", "0", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "torch.csv")]) == 0
    assert main([*common, "--out", str(tmp_path / "ov.csv"), "--runtime", "openvino"]) == 0
    a, b = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "ov.csv")
    probs = [c for c in a.columns if c.endswith("_prob")]
    assert len(a) == len(b) == 6 and (a["path"] == b["path"]).all()
    # The CSV rounds to 6 decimals.
    assert (a[probs] - b[probs]).abs().to_numpy().max() <= EXPORT_TOLERANCE + 1e-6


def test_missing_runtime_package_is_a_one_line_error(checkpoint, tmp_path, monkeypatch, capsys):
    import sys

    import numpy as np
    from PIL import Image

    image = tmp_path / "tile.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(image)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the extra were not installed
    code = main(["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.csv"),
                 "--runtime", "openvino", "--accelerator", "cpu", "--num-workers", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == ("ldcsf predict: error: --runtime openvino needs the Python package 'openvino': "
                                     "pip install 'ldcsf[runtimes]'")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_an_area_head_is_exported_with_its_sub_tile_map(tmp_path, shared_data, runtime):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True)
    checkpoint = save_checkpoint(tmp_path / "area.pt", model, CheckpointMeta.for_model(model, mpp=1.25))
    loaded = load_checkpoint(checkpoint)
    engine = runtime_model(loaded, runtime, threads=1)
    assert engine.has_area_head
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        want_logits, want_areas = loaded.model.forward_with_areas(x)
    got_logits, got_areas = engine.forward_with_areas(x)
    assert got_areas.shape == want_areas.shape and got_areas.ndim == 4
    assert float((torch.sigmoid(got_areas) - torch.sigmoid(want_areas)).abs().max()) <= EXPORT_TOLERANCE
    assert float((torch.sigmoid(got_logits) - torch.sigmoid(want_logits)).abs().max()) <= EXPORT_TOLERANCE
    # On a real slide the exported runtime fills the same area columns as PyTorch.
    tables = {}
    for name in ("torch", runtime):
        out = tmp_path / name
        assert main(["slide", str(shared_data / CMU), "--checkpoint", str(checkpoint), "--out", str(out),
                     "--runtime", name, "--limit-tiles", "8", "--num-workers", "0", "--no-progress"]) == 0
        tables[name] = pd.read_parquet(out / "CMU-1-Small-Region" / "tiles.parquet")
    area_columns = [c for c in tables["torch"].columns if c.startswith("area_")]
    assert area_columns
    pd.testing.assert_frame_equal(tables[runtime][area_columns], tables["torch"][area_columns], atol=1e-3, rtol=0)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_an_exclusive_area_head_is_exported_with_its_shares(tmp_path, runtime):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head="exclusive")
    loaded = load_checkpoint(save_checkpoint(tmp_path / "excl.pt", model, CheckpointMeta.for_model(model, mpp=1.25)))
    engine = runtime_model(loaded, runtime, threads=1)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        want = torch.sigmoid(loaded.model.forward_with_areas(x)[1])
    got = torch.sigmoid(engine.forward_with_areas(x)[1])
    assert got.shape == want.shape == (3, 4, 2, 2)
    assert float((got - want).abs().max()) <= EXPORT_TOLERANCE and float(got.sum(1).max()) <= 1.0 + EXPORT_TOLERANCE


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_an_ensemble_is_exported_with_each_members_outputs(tmp_path, runtime):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True, ensemble=3, ensemble_seeds=[0, 1, 2])
    loaded = load_checkpoint(save_checkpoint(tmp_path / "k3.pt", model, CheckpointMeta.for_model(model, mpp=1.25)))
    engine = runtime_model(loaded, runtime, threads=1)
    assert engine.ensemble_size == 3 and engine.has_area_head
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        want = loaded.model.forward_members(x)
    got = engine.forward_members(x)
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.shape[:2] == (3, 4)
        assert float((torch.sigmoid(g) - torch.sigmoid(w)).abs().max()) <= EXPORT_TOLERANCE


def test_openvino_models_freed_in_any_order_leave_signals_working(tmp_path):
    # OpenVINO's CPU plugin swaps the thread's signal stack per plugin instance; with one Core per
    # model, freeing two models in creation order left an unmapped stack, and the next SIGCHLD
    # (any subprocess ending) killed the process with SIGSEGV. Run apart: a crash must not take pytest.
    script = f"""
import gc, signal, subprocess, sys, torch
from ldcsf.inference.exported import OpenVinoModel
torch.onnx.export(torch.nn.Conv2d(3, 4, 3), torch.zeros(1, 3, 16, 16), {str(tmp_path / "conv.onnx")!r}, dynamo=False)
first = OpenVinoModel({str(tmp_path / "conv.onnx")!r})
second = OpenVinoModel({str(tmp_path / "conv.onnx")!r})
del first; gc.collect()
del second; gc.collect()
signal.signal(signal.SIGCHLD, lambda *_: None)
subprocess.run([sys.executable, "-c", "pass"], check=True)
print("alive")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("alive"), (done.returncode, done.stderr[-2000:])
