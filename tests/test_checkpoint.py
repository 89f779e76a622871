"""The checkpoint format: weights plus what is needed to predict, loaded safely."""

from __future__ import annotations

import pytest
import torch

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    model = create_model("ldcsf_swin_micro", labels=["stroma", "tumor"], use_fr=False).eval()
    meta = CheckpointMeta.for_model(model, thresholds=[0.3, 0.7], mpp=1.0, extra={"epochs": 2})
    path = save_checkpoint(tmp_path / "model.pt", model, meta)
    loaded = load_checkpoint(path)
    assert loaded.meta.labels == ["stroma", "tumor"]
    assert loaded.meta.thresholds == [0.3, 0.7]
    assert loaded.meta.input_size == 64 and loaded.meta.mpp == 1.0
    assert loaded.meta.extra == {"epochs": 2}
    assert loaded.model.fr is None  # the ablation travels with the checkpoint
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    # Plain tensors and builtins only: loadable without unpickling code.
    assert torch.load(path, weights_only=True)["format"] == "ldcsf-checkpoint"
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file may be left behind"


def test_files_that_are_not_ldcsf_checkpoints_are_named(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match=r"foreign\.pt: not an ldcsf checkpoint"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.ckpt: not a readable checkpoint"):
        load_checkpoint(text)
    good = save_checkpoint(tmp_path / "good.pt", create_model("ldcsf_swin_micro"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match=r"absent\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
