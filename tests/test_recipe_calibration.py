"""`ldcsf train --interval-calibration`: a run of a recipe carries the interval margin measured for that
recipe, and a run that is another recipe (settings, training sources) is refused before any work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ldcsf.analysis.interval_calibration import interval_calibration_from_dict
from ldcsf.checkpoint import load_checkpoint
from ldcsf.cli.main import build_parser
from ldcsf.cli.train import train_config
from ldcsf.shipped import card_path, read_card
from ldcsf.training import TrainConfig, train
from ldcsf.training.recipe_calibration import calibration_for_run, read_recipe_calibration, recipe_for_run

README = Path(__file__).resolve().parents[1] / "README.md"
LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


def readme_train_command() -> list[str]:
    """The README's `ldcsf train` command of the recommended recipe, as a user would type it."""
    block = re.search(r"ldcsf train --data runs/pancancer-data/manifest\.csv(.*?)--out runs/recommended",
                      README.read_text(), re.S)
    assert block, "the README's recommended training command was not found"
    words = block.group(0).replace("\\\n", " ").split()
    return words[1:]  # without the program name


def config_of(words: list[str]) -> TrainConfig:
    return train_config(build_parser().parse_args(words))


def test_the_readmes_command_is_the_shipped_recipe_and_carries_its_margin():
    words = readme_train_command()
    assert "--interval-calibration" in words and words[words.index("--interval-calibration") + 1] == "shipped"
    config = config_of(words)
    recipe = recipe_for_run(config)
    card = read_card()
    assert recipe.recipe == card["recipe"] and recipe.settings == card["recipe_settings"]
    assert config.interval_calibration == str(card_path())  # the CLI's word for the shipped model's card
    carried = calibration_for_run(config, recipe, pd.DataFrame({"dataset": ["glas", "wsss4luad_masks", "nct_crc", "oral"]}))
    assert carried["margin"] == card["meta"]["interval_calibration"]["margin"] and carried["scale"] == "fraction"
    assert carried["fitted_by"].endswith(f"taken over by ldcsf train from model {card['name']} "
                                         f"{card['version']} (recipe {card['recipe']}, the same settings)")
    interval_calibration_from_dict(carried)  # what the checkpoint will hold is a valid calibration
    # The benchmark's own results file names the same recipe and margin as the card it was embedded in.
    results = read_recipe_calibration(str(README.parent / "benchmarks" / "results" / "interval_calibration.json"))
    assert results.settings == card["recipe_settings"] and results.recipe == card["recipe"]
    assert results.calibration["margin"] == card["meta"]["interval_calibration"]["margin"]


@pytest.mark.parametrize("change, named", [
    (["--epochs", "10"], "epochs 10 (the recipe's: 15)"),
    (["--ensemble", "5"], "ensemble 5 (the recipe's: 3)"),
    (["--hed-jitter", "0.2"], "hed_jitter 0.2 (the recipe's: 0.05)"),
    (["--model-arg", "backbone_stage=-1"], "model_kwargs"),
])
def test_another_recipe_is_refused_naming_what_differs(change, named):
    words = readme_train_command()
    if change[0] == "--model-arg":  # replace the README's own backbone_stage
        at = words.index("backbone_stage=-2")
        words[at] = change[1]
    else:
        words += change
    with pytest.raises(ValueError) as err:
        recipe_for_run(config_of(words))
    message = str(err.value)
    assert message.startswith(f"--interval-calibration {card_path()}: the margin was measured for recipe "
                              f"{read_card()['recipe']}; this run differs in ") and named in message
    assert "\n" not in message


def test_a_manifest_without_the_calibration_sources_is_refused():
    config = config_of(readme_train_command())
    with pytest.raises(ValueError, match=r"measured for models trained with glas, wsss4luad_masks; "
                                         r"runs/pancancer-data/manifest\.csv has no rows of glas \(column dataset\)"):
        calibration_for_run(config, recipe_for_run(config), pd.DataFrame({"dataset": ["wsss4luad_masks", "oral"]}))


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not a readable JSON file"),
    ("[1, 2]", "expected a JSON object"),
    ('{"recipe_settings": {}}', "holds no interval_calibration"),
    ('{"interval_calibration": {"margin": 0.2}}', "holds no recipe_settings"),
    ('{"interval_calibration": {"margin": 3.0}, "recipe_settings": {}}', "interval_calibration margin must be"),
])
def test_a_bad_calibration_file_is_named_in_one_line(tmp_path, content, message):
    path = tmp_path / "calibration.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError) as err:
        read_recipe_calibration(str(path))
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_recipe_with_a_setting_ldcsf_train_does_not_know_is_named(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"interval_calibration": {"margin": 0.2}, "recipe_settings": {"epochs": 15, "warp": 9}}))
    config = TrainConfig(data="m.csv", model="ldcsf", out="run", epochs=15, interval_calibration=str(path))
    with pytest.raises(ValueError, match=rf"^--interval-calibration {re.escape(str(path))}: the recipe's settings name warp, "
                                         "which ldcsf train does not know$"):
        recipe_for_run(config)


def test_a_run_of_the_recipe_keeps_the_margin_in_its_checkpoint(shared_data, tmp_path):
    """A real (short) training of a small recipe on real tiles, with a margin file made for that recipe."""
    source = pd.read_csv(shared_data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = pd.concat([source[source["path"].str.startswith(f"{p}/")].sort_values("path").iloc[:12]
                      for p in ("nct_crc", "osteosarcoma")])
    frame = rows[["path", "dataset", *LABELS]].reset_index(drop=True)
    frame["path"] = [str(shared_data / p) for p in frame["path"]]
    frame["split"] = np.array(["train", "train", "val"])[np.arange(len(frame)) % 3]
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    settings = {"model": "ldcsf_swin_micro", "model_kwargs": {"area_head": True}, "freeze_backbone": True,
                "feature_views": 1, "epochs": 1, "batch_size": 8}
    datasets = sorted(frame["dataset"].unique())
    margin = {"interval_calibration": {"margin": 0.21, "scale": "fraction", "fitted_by": "a test",
                                       "sources": {name: {"images": 12} for name in datasets}},
              "recipe": "micro_area", "recipe_settings": settings}
    (tmp_path / "margin.json").write_text(json.dumps(margin))
    config = TrainConfig(data=str(tmp_path / "manifest.csv"), out=str(tmp_path / "run"), patience=0, num_workers=0,
                         accelerator="cpu", devices=1, progress=False,
                         interval_calibration=str(tmp_path / "margin.json"), **settings)
    other = TrainConfig(**{**config.__dict__, "out": str(tmp_path / "other"), "epochs": 2})
    with pytest.raises(ValueError, match=r"this run differs in epochs 2 \(the recipe's: 1\)"):
        train(other)
    assert not (tmp_path / "other").exists()  # refused before the run folder is made
    loaded = load_checkpoint(train(config).model_file)
    carried = interval_calibration_from_dict(loaded.meta.interval_calibration)
    assert carried.margin == 0.21 and set(carried.sources) == set(datasets)
    assert carried.fitted_by == f"a test; taken over by ldcsf train from {tmp_path / 'margin.json'} (recipe micro_area, the same settings)"
    # The same run without the option: a checkpoint without a margin (sampling-only intervals).
    plain = TrainConfig(**{**config.__dict__, "out": str(tmp_path / "plain"), "interval_calibration": None})
    assert load_checkpoint(train(plain).model_file).meta.interval_calibration is None
