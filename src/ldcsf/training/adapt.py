"""Fine-tuning a trained checkpoint on new data (`ldcsf train --init-from MODEL`).

The starting checkpoint fixes what the new model must keep to be used the same way: its labels,
its architecture and backbone weights, and its input settings (µm/px, input size, normalisation,
stain normalisation). The backbone stays frozen and only the heads are fitted, on the new
manifest, optionally mixed with rows of another (the original training set) so the model does
not forget the tissue it knew. Thresholds are re-tuned on the new data's validation split (the
mixed-in rows only join training), and the checkpoint records what it was adapted from.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..checkpoint import LoadedCheckpoint, load_checkpoint
from ..data.manifest import Manifest, read_manifest
from ..options import TrainConfig

log = logging.getLogger(__name__)

#: Options that --init-from takes from the checkpoint; giving them too would be contradictory.
_FROM_CHECKPOINT = {"model_kwargs": {}, "pretrained": False, "pretrained_file": None, "mpp": None,
                    "tile_mpp": None, "stain_norm": None, "stain_reference": None}


def start_from(config: TrainConfig) -> tuple[TrainConfig, LoadedCheckpoint]:
    """The run's configuration as the checkpoint dictates it, and the loaded checkpoint (weights verified)."""
    given = [name for name, default in _FROM_CHECKPOINT.items() if getattr(config, name) != default]
    if given:
        raise ValueError(f"--init-from {config.init_from}: the checkpoint fixes the model and its input; drop "
                         f"{', '.join('--' + n.replace('_', '-') for n in given)}")
    start = load_checkpoint(config.init_from)
    if not 0 < config.mix_ratio <= 100:
        raise ValueError(f"--mix-ratio must be above 0 (rows of --mix-with per new row), got {config.mix_ratio}")
    if config.labels is not None and list(config.labels) != list(start.meta.labels):
        raise ValueError(f"--init-from {config.init_from}: its labels are {', '.join(start.meta.labels)}; "
                         f"--labels cannot change them")
    if not config.freeze_backbone:
        log.info("--init-from: the backbone stays frozen, only the heads are fitted")
    adapted = dataclasses.replace(config, model=start.meta.model_name, model_kwargs=dict(start.meta.model_kwargs),
                                  labels=list(start.meta.labels), mpp=start.meta.mpp, freeze_backbone=True)
    return adapted, start


def stain_normalizer_of(start: LoadedCheckpoint):
    """The checkpoint's own stain normaliser (None if it has none): tiles must look as in its training."""
    if start.meta.stain_norm is None:
        return None
    from ..data.transforms import MacenkoNormalizer

    return MacenkoNormalizer.from_state(start.meta.stain_norm)


def mixed_manifest(new: Manifest, mix_with: str | Path, ratio: float, seed: int) -> Manifest:
    """`new` plus `ratio` x its training rows drawn from `mix_with`'s train split (all in training).

    The new data's val and test splits are left as they are: thresholds are tuned on the new tissue.
    """
    if "split" not in new.frame.columns:
        raise ValueError(f"{new.source}: --mix-with needs a 'split' column in --data (its val split tunes the "
                         "thresholds); `ldcsf data qupath` writes one")
    old = read_manifest(mix_with, labels=new.labels)
    pool = old.frame[old.frame["split"] == "train"] if "split" in old.frame.columns else old.frame
    wanted = min(len(pool), int(round(ratio * int((new.frame["split"] == "train").sum()))))
    drawn = pool.sample(n=wanted, random_state=seed).assign(split="train") if wanted else pool.iloc[:0]
    frames = [_absolute(new.frame, new.root), _absolute(drawn, old.root)]
    frame = pd.concat(frames, ignore_index=True)
    log.info("training on %d new and %d mixed-in rows (%s)", len(new.frame), len(drawn), mix_with)
    return Manifest(frame=frame, root=Path("/"), labels=list(new.labels), source=new.source)


def _absolute(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    out = frame.copy()
    for column in ("path", "mask"):
        if column in out.columns:
            out[column] = [str(root / v) if isinstance(v, str) and v and not Path(v).is_absolute() else v
                           for v in out[column]]
    return out


def adapted_from(config: TrainConfig, start: LoadedCheckpoint) -> dict:
    """What the checkpoint's meta records about its origin (plain types)."""
    return {"checkpoint": str(Path(config.init_from).resolve()), "weights_sha256": start.weights_sha256,
            "model_name": start.meta.model_name, "data": str(config.data),
            "mix_with": None if config.mix_with is None else str(config.mix_with),
            "mix_ratio": float(config.mix_ratio) if config.mix_with else None,
            "thresholds_before": [float(t) for t in start.meta.thresholds]}


def keep_untuned_thresholds(tuned: list[float], targets, before: list[float]) -> list[float]:
    """A label whose validation tiles are all positive or all negative cannot be tuned: it keeps the
    starting checkpoint's threshold instead of falling back to 0.5."""
    targets = np.asarray(targets, dtype=np.float32)
    out = []
    for j, (new, old) in enumerate(zip(tuned, before)):
        known = targets[:, j][~np.isnan(targets[:, j])]
        out.append(float(new) if len(np.unique(known)) == 2 else float(old))
    return out
