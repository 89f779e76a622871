"""The default slide run pays only for what it uses.

- `--runtime auto` (the default) runs the exported ONNX file on ONNX Runtime on a CPU when it is
  installed and exact (within 1e-5 of PyTorch), PyTorch otherwise; the export is made once and
  trusted afterwards from its record, so a later run imports neither timm (torchvision) nor onnx.
- One process on one device predicts in a plain loop, without Lightning, with the same numbers as
  Lightning's `Trainer.predict`.
- A small slide on a trusted exported file runs without torch at all (its import is a quarter of
  such a run), with the torch path's numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from ldcsf.cli.main import main
from ldcsf.inference.exported import file_sha256, onnx_path_for, read_record, record_path
from ldcsf.inference.runtimes import AUTO_TOLERANCE, resolve_runtime
from ldcsf.wholeslide.tile_prediction import in_process_device

CMU = "slides/CMU-1-Small-Region.svs"

onnxruntime = pytest.importorskip("onnxruntime", reason="the runtimes extra (onnxruntime) is not installed")


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("ldcsf_swin_micro", area_head=True)
    return save_checkpoint(tmp_path / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.25))


def test_one_process_on_one_device_runs_without_lightning():
    cpu = torch.device("cpu")
    assert in_process_device() == (torch.device("cuda", 0) if torch.cuda.device_count() == 1
                                   else None if torch.cuda.is_available() else in_process_device("cpu"))
    assert in_process_device("cpu") == cpu and in_process_device("cpu", devices=1) == cpu
    assert in_process_device("cpu", precision="32-true") == cpu
    # Anything Lightning is there for: several processes, another precision, callbacks.
    assert in_process_device("cpu", devices=2) is None
    assert in_process_device("cpu", strategy="ddp") is None
    assert in_process_device("cpu", num_nodes=2) is None
    assert in_process_device("cpu", precision="bf16-mixed") is None
    assert in_process_device("cpu", precision="bf16") is None
    assert in_process_device("cpu", callbacks=[object()]) is None


def test_auto_takes_the_exact_exported_runtime_and_records_its_check(checkpoint):
    loaded = load_checkpoint(checkpoint, lazy=True)
    assert resolve_runtime("auto", loaded, "cpu") == "onnx"
    record = read_record(onnx_path_for(checkpoint))
    assert record["checkpoint_sha256"] and 0 <= record["max_difference"] <= AUTO_TOLERANCE
    assert resolve_runtime("torch", loaded, "cpu") == "torch"  # an explicit choice stands
    assert resolve_runtime("auto", loaded, "cpu", precision="32-true") == "onnx"
    assert resolve_runtime("auto", loaded, "cpu", precision="bf16") == "torch"  # autocast is PyTorch's
    # An ensemble's exported file holds its members' outputs (the TSR interval's model part): it runs there too.
    path = ensemble_checkpoint(checkpoint.parent)
    assert resolve_runtime("auto", load_checkpoint(path, lazy=True), "cpu") == "onnx"


def ensemble_checkpoint(folder):
    """A two-member ensemble of micro heads with area heads (members differ by their seeds)."""
    torch.manual_seed(0)
    ensemble = create_model("ldcsf_swin_micro", area_head=True, ensemble=2, ensemble_seeds=[0, 1])
    return save_checkpoint(folder / "ensemble.pt", ensemble, CheckpointMeta.for_model(ensemble, mpp=1.25))


def test_an_ensembles_export_gives_each_members_outputs_and_their_mean(checkpoint, tmp_path):
    from ldcsf.inference.runtimes import runtime_model

    loaded = load_checkpoint(ensemble_checkpoint(tmp_path))
    engine = runtime_model(loaded, "onnx", threads=1)
    assert engine.ensemble_size == 2 and engine.has_area_head
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 4 - 2  # a batch size not exported
    with torch.inference_mode():
        want_logits, want_areas = loaded.model.forward_members(x)
        got_logits, got_areas = engine.forward_members(x)
        assert got_logits.shape == want_logits.shape == (2, 5, 4) and got_areas.shape == want_areas.shape
        np.testing.assert_allclose(got_logits.numpy(), want_logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(got_areas.numpy(), want_areas.numpy(), atol=1e-4)
        assert not torch.allclose(got_areas[0], got_areas[1])  # two members, not one written twice
        mean_logits, mean_areas = engine.forward_with_areas(x)
        np.testing.assert_allclose(mean_logits.numpy(), loaded.model(x).numpy(), atol=1e-4)
        np.testing.assert_allclose(mean_areas.numpy(), loaded.model.forward_with_areas(x)[1].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="not an ensemble's export"):
        runtime_model(load_checkpoint(checkpoint), "onnx", threads=1).forward_members(x)  # a single model's file


def test_an_ensembles_slide_on_onnx_runtime_gives_torchs_members_and_interval(shared_data, tmp_path):
    # The same 24 tiles on PyTorch, on ONNX Runtime in the torch path, and without torch (a fresh process):
    # every member's column and the TSR interval they widen agree.
    from ldcsf.options import SlideSettings
    from ldcsf.wholeslide.pipeline import run_slide

    path = ensemble_checkpoint(tmp_path)
    common = dict(limit_tiles=24, batch_size=8, num_workers=0, progress=False, accelerator="cpu", outputs=["parquet"])
    for runtime in ("torch", "onnx"):
        assert run_slide(shared_data / CMU, path, tmp_path / runtime, SlideSettings(runtime=runtime, **common)).status == "ok"
    code = ("import sys\nfrom ldcsf.cli.main import main\n"
            f"code = main({['slide', str(shared_data / CMU), '--checkpoint', str(path), '--limit-tiles', '24', '--num-workers', '0', '--no-progress', '--out', str(tmp_path / 'fresh')]!r})\n"
            "print('torch' in sys.modules, code)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.stdout.split()[-2:] == ["False", "0"], run.stderr[-2000:]  # no torch, and it ran
    records = {name: json.loads((tmp_path / name / "tsr.json").read_text()) for name in ("torch", "onnx")}
    records["fresh"] = json.loads((tmp_path / "fresh" / "CMU-1-Small-Region" / "tsr.json").read_text())
    for name in ("onnx", "fresh"):
        assert records[name]["settings"]["runtime"] == "onnx"
        want, got = records["torch"]["tsr"], records[name]["tsr"]
        assert "ensemble members" in got["interval_method"]
        np.testing.assert_allclose(got["stroma_fraction_interval"], want["stroma_fraction_interval"], atol=2e-3)
        np.testing.assert_allclose(got["member_stroma_fractions"], want["member_stroma_fractions"], atol=1e-4)


def test_a_tampered_export_is_made_again(checkpoint):
    from ldcsf.inference.runtimes import runtime_model

    engine = runtime_model(load_checkpoint(checkpoint), "onnx", threads=1)
    onnx_file = onnx_path_for(checkpoint)
    first = read_record(onnx_file)
    assert first["onnx_sha256"] == file_sha256(onnx_file) and engine is not None
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")  # no longer the file the record vouches for
    tampered = file_sha256(onnx_file)
    runtime_model(load_checkpoint(checkpoint), "onnx", threads=2)
    assert file_sha256(onnx_file) == read_record(onnx_file)["onnx_sha256"] != tampered
    record_path(onnx_file).unlink()  # a file without its record (an older export) is made again too
    runtime_model(load_checkpoint(checkpoint), "onnx", threads=1)
    assert read_record(onnx_file) is not None


def test_the_plain_loop_gives_lightnings_numbers(shared_data, checkpoint, tmp_path):
    # Same slide, same tiles: the plain loop (default) and Lightning's Trainer.predict (forced by a
    # callback, as under DDP) must write the same probabilities and area maps.
    import lightning as L

    from ldcsf.options import SlideSettings
    from ldcsf.wholeslide.pipeline import run_slide

    def settings():
        return SlideSettings(limit_tiles=24, batch_size=8, num_workers=0, progress=False, runtime="torch",
                             accelerator="cpu", outputs=["parquet"])

    plain = run_slide(shared_data / CMU, checkpoint, tmp_path / "plain", settings())
    trainer = run_slide(shared_data / CMU, checkpoint, tmp_path / "trainer", settings(), callbacks=[L.Callback()])
    a, b = (pd.read_parquet(tmp_path / name / "tiles.parquet") for name in ("plain", "trainer"))
    assert plain.status == trainer.status == "ok" and len(a) == len(b) == 24
    columns = [c for c in a.columns if c.startswith(("prob_", "area_"))]
    assert len(columns) == 8
    np.testing.assert_array_equal(a[columns].to_numpy(), b[columns].to_numpy())


def test_a_later_default_run_imports_neither_torch_nor_timm_nor_lightning(shared_data, checkpoint, tmp_path):
    # The first run exports the model (PyTorch and timm needed once); the second, in a fresh process,
    # must trust the export from its record and, for these 16 tiles, load no torch, timm, torchvision,
    # Lightning, onnx or scipy.signal, and give the first run's numbers.
    common = ["slide", str(shared_data / CMU), "--checkpoint", str(checkpoint), "--limit-tiles", "16",
              "--num-workers", "0", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "first")]) == 0
    code = ("import json, sys\nfrom ldcsf.cli.main import main\n"
            f"code = main({[*common, '--out', str(tmp_path / 'second')]!r})\n"
            "heavy = ['torch', 'timm', 'torchvision', 'lightning', 'onnx', 'scipy.signal', 'matplotlib.figure']\n"
            "print(json.dumps({'code': code, 'loaded': [m for m in heavy if m in sys.modules]}))\n")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}, run.stderr[-2000:]
    record = json.loads((tmp_path / "second" / "CMU-1-Small-Region" / "tsr.json").read_text())
    assert record["settings"]["runtime"] == "onnx"  # what ran is recorded, not "auto"
    first = pd.read_parquet(tmp_path / "first" / "CMU-1-Small-Region" / "tiles.parquet")
    second = pd.read_parquet(tmp_path / "second" / "CMU-1-Small-Region" / "tiles.parquet")
    pd.testing.assert_frame_equal(first, second)
    numbers = [c for c in first.columns if c.startswith(("prob_", "area_"))]
    assert len(numbers) == 8  # only the sigmoid is computed elsewhere (numpy's, not torch's)
    np.testing.assert_allclose(second[numbers].to_numpy(), first[numbers].to_numpy(), rtol=0, atol=1e-6)


def test_only_a_small_plain_cpu_run_goes_without_torch(checkpoint, monkeypatch):
    from ldcsf.options import SlideSettings
    from ldcsf.wholeslide.onnx_prediction import MAX_TILES, torch_free_export

    loaded = load_checkpoint(checkpoint, lazy=True)
    assert resolve_runtime("auto", loaded, "cpu") == "onnx"  # exported and checked once
    spec = loaded.meta.input_spec
    plain = SlideSettings(runtime="onnx", accelerator="cpu", num_workers=0)
    assert torch_free_export(loaded, plain, spec, 10) is None  # torch is loaded here: its path is faster per tile
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh `ldcsf slide` process
    assert torch_free_export(loaded, plain, spec, 10) == onnx_path_for(checkpoint)
    assert torch_free_export(loaded, plain, spec, MAX_TILES + 1) is None  # numpy's resize costs more than the import
    for other in (dict(runtime="torch"), dict(tta=True), dict(num_workers=2), dict(devices=2), dict(precision="bf16"),
                  dict(accelerator="gpu"), dict(num_nodes=2)):
        assert torch_free_export(loaded, replace(plain, **other), spec, 10) is None, other
    assert torch_free_export(loaded, plain, replace(spec, stain_norm={"method": "macenko"}), 10) is None
    onnx_path_for(checkpoint).write_bytes(b"not the file its record vouches for")
    assert torch_free_export(loaded, plain, spec, 10) is None


def test_export_without_a_checkpoint_exports_the_shipped_model_to_the_cache(tmp_path, monkeypatch, capsys):
    # The shipped model's folder inside the package may be read-only: its export goes to the user's cache,
    # where a later `ldcsf slide` with no --checkpoint finds it trusted.
    from ldcsf.shipped import export_cache_dir, load_shipped

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["export"]) == 0
    written = capsys.readouterr().out
    shipped = load_shipped(lazy=True)
    onnx_file = onnx_path_for(shipped.path, export_cache_dir(shipped.weights_sha256))
    assert onnx_file.is_relative_to(tmp_path / "cache") and str(onnx_file) in written
    assert shipped.weights_sha256[:16] in onnx_file.parts  # another shipped version's export lives beside it
    record = read_record(onnx_file)
    assert record["max_difference"] <= AUTO_TOLERANCE and record["onnx_sha256"] == file_sha256(onnx_file)
    assert resolve_runtime("auto", load_shipped(lazy=True), "cpu") == "onnx"
