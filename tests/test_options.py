"""Run options: each default stated once (ldcsf.options), read by the command line and the library."""

from __future__ import annotations

import inspect
from dataclasses import asdict, fields

import pytest

from ldcsf.cli.common import device_options
from ldcsf.cli.main import build_parser
from ldcsf.cli.slide import slide_settings
from ldcsf.cli.train import train_config
from ldcsf.options import (
    DEVICE_FIELDS,
    SPLIT_FRACTIONS,
    DeviceOptions,
    PredictOptions,
    SlideSettings,
    TrainConfig,
    lightning_precision,
)
from ldcsf.utils.workers import default_num_workers


def parse(*argv):
    return build_parser().parse_args(list(argv))


# -- the command line builds its options from the dataclasses' defaults ----------------------------

def test_train_without_options_is_the_default_train_config():
    config = train_config(parse("train", "--data", "m.csv", "--out", "run"))
    assert asdict(config) == asdict(TrainConfig(data="m.csv", model="ldcsf_swin_mini", out="run"))


def test_evaluate_and_predict_without_options_are_the_default_predict_options():
    evaluate = device_options(parse("evaluate", "--checkpoint", "m.pt", "--data", "m.csv", "--out", "e"))
    predict = device_options(parse("predict", "a.png", "--checkpoint", "m.pt", "--out", "p.csv"))
    assert asdict(evaluate) == asdict(predict) == asdict(PredictOptions())


def test_slide_without_options_is_the_default_settings_but_measures_its_readers():
    settings = slide_settings(parse("slide", "a.svs", "--checkpoint", "m.pt", "--out", "o"))
    # The one stated difference: the command measures the reader count (None), library calls read in-process.
    assert asdict(settings) == asdict(SlideSettings(num_workers=None))
    assert SlideSettings().num_workers == 0


def test_flags_reach_the_options_by_field_name():
    config = train_config(parse("train", "--data", "m.csv", "--out", "run", "--lr", "0.01", "--devices", "2",
                                "--precision", "bf16", "--labels", "tumor, stroma", "--area-head", "--no-progress"))
    assert (config.lr, config.devices, config.precision, config.labels) == (0.01, "2", "bf16", ["tumor", "stroma"])
    assert config.model_kwargs == {"area_head": True} and config.progress is False
    exclusive = train_config(parse("train", "--data", "m.csv", "--out", "run", "--area-head", "exclusive"))
    assert exclusive.model_kwargs == {"area_head": "exclusive"}
    settings = slide_settings(parse("slide", "a.svs", "--checkpoint", "m.pt", "--out", "o", "--devices", "0,1",
                                    "--min-tissue", "0.5", "--no-progress", "--runtime", "onnx"))
    assert (settings.devices, settings.min_tissue, settings.progress, settings.runtime) == ([0, 1], 0.5, False, "onnx")
    options = device_options(parse("predict", "a.png", "--checkpoint", "m.pt", "--out", "p.csv", "--runtime", "onnx",
                                   "--batch-size", "8"))
    assert (options.runtime, options.batch_size, options.devices) == ("onnx", 8, 1)


#: Fields without an argument of their name: library-only, or given explicitly by the command's builder.
@pytest.mark.parametrize("command,argv,cls,not_flags", [
    ("train", ["--data", "m.csv", "--out", "r"], TrainConfig, {"split_fractions", "model_kwargs"}),
    ("slide", ["a.svs", "--checkpoint", "m.pt", "--out", "o"], SlideSettings, {"progress", "pictures"}),
    ("evaluate", ["--checkpoint", "m.pt", "--data", "m.csv", "--out", "e"], PredictOptions, {"runtime", "trainer_kwargs"}),
])
def test_every_field_has_a_flag_of_its_name_or_is_listed(command, argv, cls, not_flags):
    """A field added without a flag (or a flag renamed) shows here, not as a silently ignored option."""
    args = vars(parse(command, *argv))
    assert {f.name for f in fields(cls)} - set(args) == not_flags


def test_help_shows_the_dataclass_defaults():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    train_help = sub.choices["train"].format_help()
    for text in ("training epochs (default: 30)", f"(default: {TrainConfig.lr})", "(default: auto)"):
        assert text in " ".join(train_help.split()), text
    evaluate_help = " ".join(sub.choices["evaluate"].format_help().split())
    assert "or auto (default: 1)" in evaluate_help


# -- the defaults today's users know, and the records keep their keys -------------------------------

def test_defaults_are_those_the_commands_always_had():
    train = TrainConfig(data="m.csv", model="x", out="r")
    assert (train.accelerator, train.devices, train.precision, train.batch_size, train.lr, train.weight_decay,
            train.warmup_epochs, train.split_fractions) == ("auto", "auto", "32-true", 32, 3e-4, 0.05, 1.0, [0.7, 0.15, 0.15])
    assert train.num_workers == default_num_workers()
    predict = PredictOptions()
    # the runtime default became `auto` (the exported model when exact, docs/slides.md): chosen, not drift
    assert (predict.devices, predict.precision, predict.batch_size, predict.runtime) == (1, "32-true", 64, "auto")
    slide = SlideSettings()
    assert (slide.devices, slide.precision, slide.batch_size, slide.min_tissue, slide.num_workers) == ("auto", None, 64, 0.25, 0)


def test_saved_records_keep_their_keys():
    """config.json holds asdict(TrainConfig); a slide's tsr.json the SlideSettings fields."""
    train_keys = {
        "data", "model", "out", "labels", "model_kwargs", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs",
        "loss", "pos_weight", "max_pos_weight", "balanced", "pretrained", "pretrained_file", "stain_norm",
        "stain_reference", "mpp", "tile_mpp", "seed", "patience", "threshold_method", "split_fractions", "strict",
        "resume", "accelerator", "devices", "strategy", "num_nodes", "precision", "num_workers", "max_steps",
        "limit_train_batches", "limit_val_batches", "progress", "area_weight", "freeze_backbone", "feature_views",
        "feature_cache",
    }
    assert set(asdict(TrainConfig(data="m.csv", model="x", out="r"))) >= train_keys
    slide_keys = {"mpp", "overlap", "min_tissue", "batch_size", "num_workers", "threads", "accelerator", "devices",
                  "strategy", "num_nodes", "precision", "field_diameter_um", "limit_tiles", "tta", "stain_norm",
                  "progress", "overwrite", "strict", "runtime", "pictures", "outputs"}
    assert set(asdict(SlideSettings())) == slide_keys  # the settings every tsr.json records (less the unrecorded)
    predict_keys = {"accelerator", "devices", "strategy", "num_nodes", "precision", "batch_size", "num_workers",
                    "progress", "runtime", "trainer_kwargs"}
    assert set(asdict(PredictOptions())) == predict_keys


def test_a_saved_config_builds_its_train_config_again():
    import json

    config = TrainConfig(data="m.csv", model="ldcsf", out="r", model_kwargs={"backbone": "resnet18"}, labels=["tumor"],
                         devices=[0, 1], precision="bf16", limit_train_batches=0.5)
    saved = json.loads(json.dumps(asdict(config)))  # as config.json holds it
    assert TrainConfig(**saved) == config


def test_old_keyword_construction_still_works():
    settings = SlideSettings(batch_size=4, accelerator="cpu", devices=1, progress=False)
    assert (settings.accelerator, settings.devices, settings.batch_size) == ("cpu", 1, 4)
    config = TrainConfig("m.csv", "ldcsf_swin_micro", "run", epochs=2, accelerator="cpu", devices=1)
    assert (config.data, config.model, config.out, config.devices) == ("m.csv", "ldcsf_swin_micro", "run", 1)


# -- one device definition, one place for precision names -----------------------------------------

def test_every_run_shape_is_device_options():
    for cls in (TrainConfig, SlideSettings, PredictOptions):
        assert issubclass(cls, DeviceOptions)
        assert tuple(f.name for f in fields(cls))[: len(DEVICE_FIELDS)] == DEVICE_FIELDS


@pytest.mark.parametrize("given,name", [
    ("bf16", "bf16-mixed"), ("16", "16-mixed"), ("fp16", "16-mixed"), ("32", "32-true"), ("fp32", "32-true"),
    ("bf16-mixed", "bf16-mixed"), ("32-true", "32-true"), (None, None), (16, "16-mixed"),
])
def test_precision_aliases_resolve(given, name):
    assert lightning_precision(given) == name


def test_lightning_takes_the_resolved_options():
    """A real Trainer from each shape's options, an alias among them (fp32 is no name Lightning knows)."""
    import lightning as L

    config = TrainConfig(data="m.csv", model="x", out="r", accelerator="cpu", devices=1, precision="fp32")
    kwargs = config.lightning_kwargs()
    assert kwargs == {"accelerator": "cpu", "devices": 1, "strategy": "auto", "num_nodes": 1, "precision": "32-true"}
    for options in (config, PredictOptions(accelerator="cpu", precision="bf16"), SlideSettings(accelerator="cpu", devices=1)):
        trainer = L.Trainer(**options.lightning_kwargs(), logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        assert trainer.precision == (lightning_precision(options.precision) or "32-true")
    assert config.precision == "fp32"  # recorded as given; resolved where a Trainer is made


def test_library_defaults_are_the_options_defaults():
    from ldcsf.data.splits import assign_splits
    from ldcsf.training.datamodule import DEFAULT_FRACTIONS
    from ldcsf.training.module import MultiLabelModule
    from ldcsf.wsi.tiling import tile_grid

    module = inspect.signature(MultiLabelModule).parameters
    for name in ("loss", "lr", "weight_decay", "warmup_epochs", "area_weight"):
        assert module[name].default == getattr(TrainConfig, name), name
    assert inspect.signature(assign_splits).parameters["fractions"].default == SPLIT_FRACTIONS == tuple(DEFAULT_FRACTIONS)
    assert inspect.signature(tile_grid).parameters["min_tissue"].default == SlideSettings().min_tissue
