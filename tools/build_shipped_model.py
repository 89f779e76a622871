"""Rebuild the model that ships inside ldcsf (src/ldcsf/models/shipped/) from the shared data.

    python tools/build_shipped_model.py --shared ../shared/data --work runs/shipped-build   # `make model`

1. the pan-cancer set with GlaS added (`ldcsf data pancancer --cap oral=300 --add-source glas`,
   `shipped_sources`): both sources with pixel masks, lung and colon, teach the area head; the
   weights inherit WSSS4LUAD's and GlaS's terms: research use only, no commercial use. How the
   recipe does on sources it never saw is measured by leaving each source out
   (benchmarks/loso.py, docs/results.md), not by keeping one out of the shipped model;
2. the README's recommended recipe (benchmarks/_recipe.py, RECOMMENDED) trained on it;
3. the heads (everything after the frozen, pip-installed backbone) written as float16
   safetensors, and the card (labels, thresholds, µm/px, digest, test-split metrics of the
   shipped file itself, measured after the float16 conversion);
4. the TSR interval's model-error margin, calibrated on held-out sources by
   benchmarks/interval_calibration.py, put in the card's meta (`interval_calibration`).
Steps already done in --work are reused, so an interrupted build continues. After a new
calibration alone, `--calibration-only` puts it in the existing card without rebuilding anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the recipes live with the benchmarks that compare them

from _recipe import ORAL_CAP, RECIPES, RECOMMENDED  # noqa: E402

#: Sources left out of the shipped model, and why (the shared data's README gives each licence). None:
#: WSSS4LUAD ("research use") and GlaS ("research purposes only, no commercial use") allow weights derived
#: from them to be shared for research use, so the shipped weights are research use only, not for
#: clinical or commercial use (docs/model_card.md). GlaS was kept out until leaving sources out showed
#: what its masks add on the others (docs/results.md, "GlaS in the recipe").
EXCLUDED_SOURCES: dict[str, str] = {}

#: Sources `ldcsf data pancancer` adds only when asked (--add-source) that the shipped model trains on.
ADDED_SOURCES = ("glas",)


#: The weights' terms, carried in the card: they inherit the training data's most restrictive licence.
WEIGHTS_LICENCE = ("research use only, not for clinical or commercial use (inherited from WSSS4LUAD's research-use "
                   "terms and GlaS's research-purposes-only, no-commercial-use terms); ldcsf's code is Apache-2.0")


#: The TSR interval's model-error margin, fitted on the recipe's leave-one-source-out folds.
CALIBRATION_JSON = ROOT / "benchmarks" / "results" / "interval_calibration.json"

#: Scratch folder -> the left-out sources scored there as never-seen sources (results_by_source);
#: empty while no source is left out.
HELD_OUT: dict[str, tuple[str, ...]] = {}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "shipped-build", help="scratch folder (reused)")
    p.add_argument("--out", type=Path, default=None, help="default: the package's models/shipped/ folder")
    p.add_argument("--version", default=None,
                   help="the model's version (default: the card's, its minor bumped when the weights changed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval-calibration", type=Path, default=CALIBRATION_JSON,
                   help="benchmarks/interval_calibration.py's results: their margin goes into the card")
    p.add_argument("--calibration-only", action="store_true",
                   help="only put --interval-calibration into the existing card (weights and metrics unchanged)")
    return p.parse_args(argv)


def shipped_sources():
    """The sources `ldcsf data pancancer` builds by default plus ADDED_SOURCES, less those kept out."""
    from ldcsf.data.sources import DEFAULT_SOURCES, SHARED_SOURCES

    added = tuple(s for s in SHARED_SOURCES if s.name in ADDED_SOURCES and s not in DEFAULT_SOURCES)
    return tuple(s for s in DEFAULT_SOURCES + added if s.name not in EXCLUDED_SOURCES)


def build_data(args) -> Path:
    from ldcsf.data.pancancer import build_pancancer

    manifest = args.work / "data" / "manifest.csv"
    if not manifest.is_file():
        build_pancancer(args.shared, manifest.parent, seed=args.seed, caps={"oral": ORAL_CAP},
                        sources=shipped_sources(), progress=False)
    return manifest


def train_model(manifest: Path, args) -> Path:
    from ldcsf.training.train import TrainConfig, train

    run = args.work / "run"
    if (run / "model.pt").is_file():
        return run / "model.pt"
    last = run / "checkpoints" / "last.ckpt"
    config = TrainConfig(data=str(manifest), out=str(run), seed=args.seed, num_workers=0, accelerator="cpu",
                         devices=1, resume=last.is_file(), patience=0, **RECIPES[RECOMMENDED])
    started = time.monotonic()
    model_file = train(config).model_file
    (run / "training_seconds.txt").write_text(f"{time.monotonic() - started:.0f}\n")
    return model_file


def results_by_source(manifest: Path, args, folder: Path) -> dict:
    """Test-split metrics per source, and on the left-out sources' mask tiles, which the model never saw.

    Scoring on GlaS is the research use its terms allow; no weights derived from it ship.
    """
    import tempfile

    import pandas as pd

    from ldcsf.data.pancancer import build_pancancer
    from ldcsf.data.sources import SHARED_SOURCES
    from ldcsf.evaluation.evaluate import evaluate
    from ldcsf.options import PredictOptions
    from ldcsf.shipped import load_shipped

    options = PredictOptions(accelerator="cpu", devices=1, num_workers=0, progress=False)
    shipped, frame, parts = load_shipped(folder), pd.read_csv(manifest), {}
    for source, rows in frame[frame["split"].eq("test")].groupby("dataset"):
        part = manifest.parent / f"test_{source}.csv"  # beside the manifest: its relative paths still hold
        rows.to_csv(part, index=False)
        parts[f"{source} (test split)"] = part
    for scratch_name, names in HELD_OUT.items():  # the left-out sources, which the model never saw
        held_out = args.work / scratch_name / "manifest.csv"
        if not held_out.is_file():
            build_pancancer(args.shared, held_out.parent, seed=args.seed, progress=False,
                            sources=[s for s in SHARED_SOURCES if s.name in names])
        parts[f"{names[0].split('_')[0]} (never trained on; all tiles)"] = held_out
    results = {}
    for name, part in parts.items():
        with tempfile.TemporaryDirectory() as scratch:
            report = evaluate(shipped, part, scratch, split="all", options=options).report.to_dict()
        results[name] = {"images": report["summary"]["images"], "mAP": report["summary"]["mAP"],
                         "per_label": {label: {k: row[k] for k in ("accuracy", "auroc", "annotated")}
                                       for label, row in report["per_label"].items()}}
    return results


def stroma_fraction_never_seen(args, folder: Path) -> dict:
    """Per held-out source with masks: the shipped model's stroma fraction per image against the mask's.

    Scored as `benchmarks/loso.py` scores a held-out GlaS fold (tiles' mean estimated areas summed
    per image, tumour-bearing images only), so the card's figures compare with its results.
    """
    from loso import image_tsr, loaded_tile_areas, tsr_scores

    from ldcsf.data.manifest import read_manifest
    from ldcsf.shipped import load_shipped

    shipped, results = load_shipped(folder), {}
    for scratch_name, names in HELD_OUT.items():
        manifest = read_manifest(args.work / scratch_name / "manifest.csv")
        frame = manifest.frame.assign(path=[str(p) for p in manifest.image_paths()])
        if {"frac_stroma", "frac_tumor", "source_image"} <= set(frame.columns):
            areas = loaded_tile_areas(shipped, frame)
            results[names[0]] = tsr_scores(image_tsr(frame, areas, list(shipped.meta.labels)))
    return results


def interval_calibration(path: Path) -> dict:
    """The calibration in `path` (interval_calibration.py's JSON), checked as a checkpoint's would be."""
    from ldcsf.checkpoint_safety import check_interval_calibration

    if not path.is_file():
        raise SystemExit(f"{path}: not found; run benchmarks/interval_calibration.py first")
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("recipe") != RECOMMENDED:
        raise SystemExit(f"{path}: calibrated on recipe {results.get('recipe')!r}, the shipped model is {RECOMMENDED!r}; "
                         "rerun benchmarks/interval_calibration.py --recipe " + RECOMMENDED)
    return check_interval_calibration(path, results.get("interval_calibration")).to_dict()


def embed_calibration(out: Path, calibration: dict) -> dict:
    """The existing card with `calibration` in its meta (written atomically); weights untouched."""
    from ldcsf.shipped import card_path, read_card
    from ldcsf.utils.atomic import write_json_atomic

    card = read_card(out)
    card["meta"]["interval_calibration"] = calibration
    write_json_atomic(card_path(out), card)
    return card


def main(argv=None) -> int:
    args = parse_args(argv)
    from ldcsf.shipped import SHIPPED_DIR

    calibration = interval_calibration(args.interval_calibration)  # checked before the long steps, not after
    if args.calibration_only:
        card = embed_calibration(args.out or SHIPPED_DIR, calibration)
        print(json.dumps({"name": card["name"], "version": card["version"], "interval_calibration": calibration}, indent=1))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    from ldcsf.shipped import card_path, export_shipped
    from ldcsf.utils.atomic import write_json_atomic

    manifest = build_data(args)
    model_file = train_model(manifest, args)
    out = args.out or SHIPPED_DIR
    card = export_shipped(model_file, manifest, out, recipe=RECOMMENDED, recipe_settings=RECIPES[RECOMMENDED],
                          version=args.version,
                          excluded=EXCLUDED_SOURCES, command=" ".join(["python", *sys.argv]))
    card["weights_licence"] = WEIGHTS_LICENCE
    card["results_by_source"] = results_by_source(manifest, args, out)
    if HELD_OUT:
        card["stroma_fraction_never_seen"] = stroma_fraction_never_seen(args, out)
    card["unseen_sources"] = ("each source left out of training in turn: docs/results.md, benchmarks/results/"
                              "heldout_recipes.md and glas_in_recipe.md")
    seconds = args.work / "run" / "training_seconds.txt"  # absent when the run was resumed
    card["training_seconds"] = float(seconds.read_text()) if seconds.is_file() else None
    card["meta"]["interval_calibration"] = calibration
    write_json_atomic(card_path(out), card)
    print(json.dumps({k: card[k] for k in ("name", "version", "sha256")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
