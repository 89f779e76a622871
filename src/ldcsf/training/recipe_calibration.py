"""A training run takes over the TSR interval's margin measured for its recipe (`ldcsf train --interval-calibration`).

The model-error margin of a stroma fraction's interval (`analysis.interval_calibration`) is measured
on a recipe's leave-one-source-out folds, the folds of three training seeds pooled: it describes
the recipe trained on the data it was measured with, not one training run, whose seed moves its
numbers as much as the recipe does. So a run of the same recipe on the same data may carry it, and
its slides' intervals then cover the model's error on unseen tissue as the recipe's did. This
module reads the margin (from the shipped model's card, or from a file written by
benchmarks/interval_calibration.py), refuses a run whose settings or training sources differ from
the recipe's, and gives the calibration the run's checkpoint carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from ..options import TrainConfig, field_default

#: Settings a recipe leaves at TrainConfig's default and a run must leave there too: they change the
#: trained weights. (Seed, devices, workers, patience and paths do not make another recipe.)
COMPARED_DEFAULTS = ("batch_size", "weight_decay", "warmup_epochs", "loss", "pos_weight", "max_pos_weight", "balanced",
                     "hed_jitter", "crop_scale", "area_weight", "stain_norm", "stain_reference", "mpp", "tile_mpp",
                     "pretrained_file", "feature_views", "ensemble", "ensemble_views", "init_from", "mix_with")


@dataclass(frozen=True)
class RecipeCalibration:
    """A recipe's margin, the settings it was measured for, and where it was read."""

    calibration: dict[str, Any]
    recipe: str
    settings: dict[str, Any]
    origin: str


def read_recipe_calibration(source: str) -> RecipeCalibration:
    """A JSON file holding `interval_calibration` (top level, or in `meta` as a model card has it) and
    `recipe_settings`: benchmarks/interval_calibration.py's results or a model card (`ldcsf train
    --interval-calibration shipped` passes the shipped model's, `ldcsf.shipped.card_path()`)."""
    from ..analysis.interval_calibration import interval_calibration_from_dict

    where = Path(source)
    if not where.is_file():
        raise ValueError(f"--interval-calibration {source}: no such file (give the JSON of "
                         "benchmarks/interval_calibration.py or of a model card; on the command line also 'shipped')")
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with interval_calibration and recipe_settings")
    value = data.get("interval_calibration") or (data.get("meta") or {}).get("interval_calibration")
    if value is None:
        raise ValueError(f"{where}: holds no interval_calibration")
    settings = data.get("recipe_settings")
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: holds no recipe_settings (the recipe the margin was measured for)")
    try:
        calibration = interval_calibration_from_dict(value)
    except ValueError as err:
        raise ValueError(f"{where}: interval_calibration {err}") from None
    card = "name" in data and "version" in data and "meta" in data
    return RecipeCalibration(calibration=calibration.to_dict(), recipe=str(data.get("recipe", "unnamed")),
                             settings=settings, origin=f"model {data['name']} {data['version']}" if card else str(where))


def setting_differences(config: TrainConfig, settings: dict[str, Any]) -> list[str]:
    """Each setting where `config` differs from the recipe's (`settings`, TrainConfig's default elsewhere)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"the recipe's settings name {', '.join(unknown)}, which ldcsf train does not know")
    out = []
    for name in sorted(set(settings) | set(COMPARED_DEFAULTS)):
        expected = settings[name] if name in settings else field_default(TrainConfig, name)
        actual = getattr(config, name)
        if _plain(actual) != _plain(expected):
            out.append(f"{name} {actual!r} (the recipe's: {expected!r})")
    return out


def recipe_for_run(config: TrainConfig) -> RecipeCalibration | None:
    """The recipe margin `config` asks for (None without --interval-calibration), checked against the
    run's settings before any work is done: a one-line ValueError when the run is another recipe."""
    if not config.interval_calibration:
        return None
    recipe = read_recipe_calibration(str(config.interval_calibration))
    try:
        differences = setting_differences(config, recipe.settings)
    except ValueError as err:
        raise ValueError(f"--interval-calibration {config.interval_calibration}: {err}") from None
    if differences:
        raise ValueError(f"--interval-calibration {config.interval_calibration}: the margin was measured for recipe "
                         f"{recipe.recipe}; this run differs in " + "; ".join(differences))
    return recipe


def calibration_for_run(config: TrainConfig, recipe: RecipeCalibration, manifest: pd.DataFrame) -> dict[str, Any]:
    """The calibration the run's checkpoint carries, once its manifest (its `dataset` column) is read."""
    sources = set(manifest["dataset"].dropna()) if "dataset" in manifest else set()
    # The folds' models learnt areas from the other masked sources: a run without them is another recipe.
    missing = sorted(set(recipe.calibration["sources"]) - sources)
    if missing:
        raise ValueError(f"--interval-calibration {config.interval_calibration}: the margin was measured for models "
                         f"trained with {', '.join(recipe.calibration['sources'])}; {config.data} has no rows of "
                         f"{', '.join(missing)} (column dataset)")
    fitted_by = recipe.calibration.get("fitted_by", "")
    taken = f"taken over by ldcsf train from {recipe.origin} (recipe {recipe.recipe}, the same settings)"
    return {**recipe.calibration, "fitted_by": f"{fitted_by}; {taken}" if fitted_by else taken}


def _plain(value: Any) -> Any:
    """Settings as JSON would write them (tuples as lists, 1e-3 as 0.001), so equal settings compare equal."""
    return json.loads(json.dumps(value))
