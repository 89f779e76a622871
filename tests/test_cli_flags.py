"""Every flag of train, evaluate, predict and slide parses, with the default it has always had.

The tables below are the command-line surface as users know it; a flag may gain an alias or a
better help text, never lose its name, its destination or its default.
"""

from __future__ import annotations

import pytest

from ldcsf.cli.main import build_parser
from ldcsf.utils.workers import default_num_workers

#: flag -> (destination, default, a value to give, what it parses to); store_true/false flags have no value.
SWITCH = object()
NUM_WORKERS = default_num_workers()

DEVICE_FLAGS = {
    "--accelerator": ("accelerator", "auto", "cpu", "cpu"),
    "--devices": ("devices", None, "0,1", "0,1"),
    "--strategy": ("strategy", "auto", "ddp", "ddp"),
    "--num-nodes": ("num_nodes", 1, "2", 2),
    "--precision": ("precision", "32-true", "bf16", "bf16"),
    "--num-workers": ("num_workers", NUM_WORKERS, "3", 3),
    "--no-progress": ("progress", True, SWITCH, False),
}

FLAGS = {
    "train": {
        "--model": ("model", None, "ldcsf_swin_micro", "ldcsf_swin_micro"),
        "--backbone": ("backbone", None, "resnet18", "resnet18"),
        "--model-arg": ("model_args", [], "use_ldc=false", ["use_ldc=false"]),
        "--labels": ("labels", None, "stroma,tumor", "stroma,tumor"),
        "--epochs": ("epochs", 30, "5", 5),
        "--batch-size": ("batch_size", 32, "8", 8),
        "--lr": ("lr", 3e-4, "0.001", 0.001),
        "--weight-decay": ("weight_decay", 0.05, "0.1", 0.1),
        "--warmup-epochs": ("warmup_epochs", 1.0, "0.5", 0.5),
        "--loss": ("loss", "bce", "asl", "asl"),
        "--pos-weight": ("pos_weight", False, SWITCH, True),
        "--max-pos-weight": ("max_pos_weight", 10.0, "5", 5.0),
        "--balanced": ("balanced", False, SWITCH, True),
        "--pretrained": ("pretrained", False, SWITCH, True),
        "--pretrained-file": ("pretrained_file", None, "w.safetensors", "w.safetensors"),
        "--mpp": ("mpp", None, "1.0", 1.0),
        "--tile-mpp": ("tile_mpp", None, "0.5", 0.5),
        "--hed-jitter": ("hed_jitter", 0.05, "0.15", 0.15),
        "--stain-norm": ("stain_norm", None, "macenko", "macenko"),
        "--stain-reference": ("stain_reference", None, "ref.png", "ref.png"),
        "--area-head": ("area_head", False, SWITCH, True),
        "--area-weight": ("area_weight", 1.0, "0.5", 0.5),
        "--freeze-backbone": ("freeze_backbone", False, SWITCH, True),
        "--feature-views": ("feature_views", 4, "2", 2),
        "--feature-cache": ("feature_cache", None, "cache", "cache"),
        "--threshold-method": ("threshold_method", "youden", "f1", "f1"),
        "--seed": ("seed", 0, "3", 3),
        "--patience": ("patience", 10, "0", 0),
        "--strict": ("strict", False, SWITCH, True),
        "--resume": ("resume", False, SWITCH, True),
        "--max-steps": ("max_steps", -1, "7", 7),
        "--limit-train-batches": ("limit_train_batches", None, "0.5", 0.5),
        "--limit-val-batches": ("limit_val_batches", None, "4", 4),
        **DEVICE_FLAGS,
    },
    "evaluate": {
        "--split": ("split", "test", "all", "all"),
        "--batch-size": ("batch_size", 64, "8", 8),
        "--strict": ("strict", False, SWITCH, True),
        **DEVICE_FLAGS,
    },
    "predict": {
        "--batch-size": ("batch_size", 64, "8", 8),
        "--runtime": ("runtime", "auto", "onnx", "onnx"),
        **DEVICE_FLAGS,
    },
    "slide": {
        "--mpp": ("mpp", None, "0.25", 0.25),
        "--overlap": ("overlap", 0.0, "0.5", 0.5),
        "--min-tissue": ("min_tissue", 0.25, "0.5", 0.5),
        "--batch-size": ("batch_size", 64, "8", 8),
        "--num-workers": ("num_workers", None, "2", 2),
        "--threads": ("threads", None, "2", 2),
        "--accelerator": ("accelerator", "auto", "cpu", "cpu"),
        "--devices": ("devices", "auto", "2", "2"),
        "--strategy": ("strategy", "auto", "ddp", "ddp"),
        "--num-nodes": ("num_nodes", 1, "2", 2),
        "--precision": ("precision", None, "bf16", "bf16"),
        "--runtime": ("runtime", "auto", "onnx", "onnx"),
        "--field-diameter-um": ("field_diameter_um", None, "1500", 1500.0),
        "--tta": ("tta", False, SWITCH, True),
        "--stain-norm": ("stain_norm", None, "none", "none"),
        "--limit-tiles": ("limit_tiles", None, "10", 10),
        "--no-progress": ("no_progress", False, SWITCH, True),
        "--overwrite": ("overwrite", False, SWITCH, True),
        "--strict": ("strict", False, SWITCH, True),
    },
}

#: The arguments each command cannot run without.
REQUIRED = {
    "train": ["--data", "m.csv", "--out", "run"],
    "evaluate": ["--checkpoint", "model.pt", "--data", "m.csv", "--out", "eval"],
    "predict": ["a.png", "--checkpoint", "model.pt", "--out", "p.csv"],
    "slide": ["a.svs", "--checkpoint", "model.pt", "--out", "out"],
}

CASES = [(command, flag) for command, flags in FLAGS.items() for flag in flags]


@pytest.mark.parametrize("command,flag", CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_flag_keeps_its_default(command, flag):
    dest, default, _, _ = FLAGS[command][flag]
    args = build_parser().parse_args([command, *REQUIRED[command]])
    assert getattr(args, dest) == default


@pytest.mark.parametrize("command,flag", CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_flag_still_parses(command, flag):
    dest, _, value, parsed = FLAGS[command][flag]
    given = [flag] if value is SWITCH else [flag, value]
    args = build_parser().parse_args([command, *REQUIRED[command], *given])
    assert getattr(args, dest) == parsed
