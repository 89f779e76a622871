"""One entry per held-out source, from the leave-one-source-out folds of a recipe: images, per-label
accuracy / AUROC, and, where masks give a true stroma fraction, MAE, Spearman, stroma-high/low
agreement and the coverage of each image's 95 % interval (`ldcsf.analysis.uncertainty`).

Reads what `loso.py` left in its work folder (scores.json of every fold; tile_areas.csv of the
folds whose source has masks, e.g. GlaS) and trains nothing. Coverage: the share of held-out
images whose mask's stroma fraction lies inside the interval computed from the model's tile areas,
widened by the model-error margin calibrated on the other masked sources (`interval_calibration.py`;
sampling only, recorded beside it, when only one source has masks).

    .venv/bin/python benchmarks/loso.py --recipes lite0_area --sources glas wsss4luad_masks --threads 1 --out benchmarks/results/loso_masked
    .venv/bin/python benchmarks/heldout_sources.py --recipe lite0_area
    # the recommended recipe trains on GlaS: every other source's fold from loso.py --train-with glas
    .venv/bin/python benchmarks/heldout_sources.py --recipe lite0_area_mid --work benchmarks/results/heldout_work/seed0_with_glas \\
        --fold glas=benchmarks/results/heldout_work/seed0/lite0_area_mid/glas
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, add_fold_option, command_line, fmt, fold_folders, markdown_table, now, write_results
from _recipe import RECOMMENDED
from loso import tsr_scores
from ldcsf.analysis.interval_calibration import UNITS

LABELS = ("stroma", "necrosis", "non_tumor", "tumor")
#: GlaS images are 549 x 370 px at 0.875 µm/px: 4 x 3 tiles of 128 px (plus edge tiles), one
#: 4 x 4 block; WSSS4LUAD images are 2-7 tiles wide. The per-image interval therefore resamples
#: single tiles (1 x 1 blocks).
IMAGE_BLOCK_TILES = 1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=RECOMMENDED, help="default: the recommended recipe")
    p.add_argument("--work", type=Path, default=RESULTS / "loso_work", help="loso.py's --work folder")
    p.add_argument("--block-tiles", type=int, default=IMAGE_BLOCK_TILES, help="bootstrap block side, in tiles")
    add_fold_option(p, "e.g. the folds of loso.py --train-with glas, where the recipe trains on GlaS as the shipped "
                       "model does")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_sources", help="results stem (.md, .json)")
    args = p.parse_args(argv)
    args.fold_folders = fold_folders(p, args.fold)
    misnamed = sorted(s for s, folder in args.fold_folders.items() if folder.name != s)
    if misnamed:
        p.error(f"--fold {misnamed[0]}=...: a fold folder is named after its held-out source")
    return args


def finished_folds(args) -> list[Path]:
    """WORK/RECIPE's finished folds, each source's replaced by its --fold folder where one is given."""
    folds = {p.parent.name: p.parent for p in (args.work / args.recipe).glob("*/scores.json")}
    for source, folder in args.fold_folders.items():
        if not (folder / "scores.json").is_file():
            raise SystemExit(f"{folder}: no scores.json (the fold is unfinished; run loso.py)")
        folds[source] = folder
    return [folds[name] for name in sorted(folds)]


def image_intervals(tiles: pd.DataFrame, block_tiles: int) -> pd.DataFrame:
    """Per source image: true and predicted stroma fraction and the prediction's 95 % interval.

    An ensemble's fold (loso.py writes `member{k}_area_stroma` / `_tumor` columns) widens each interval
    by its members' fractions of the image, as `ldcsf slide` does; `member_sd` is their spread.
    """
    from ldcsf.analysis.uncertainty import stroma_fraction_interval

    members = sorted({c[:-len("_area_stroma")] for c in tiles.columns if c.startswith("member") and c.endswith("_area_stroma")},
                     key=lambda m: int(m[len("member"):]))
    rows = []
    for image, part in tiles.groupby("source_image"):
        true_s, true_t = part["frac_stroma"].sum(), part["frac_tumor"].sum()
        if true_t <= 0:
            continue  # a TSR is scored in tumours (benign GlaS images have none)
        table = pd.DataFrame({"row": part["row"], "col": part["col"],
                              "area_stroma": part["area_stroma"], "area_tumor": part["area_tumor"],
                              "tissue_area_mm2": 1.0, "tissue_fraction": 1.0})
        fractions = [part[f"{m}_area_stroma"].sum() / (part[f"{m}_area_stroma"].sum() + part[f"{m}_area_tumor"].sum())
                     for m in members]
        interval = stroma_fraction_interval(table, weighting="estimated_area", block_tiles=block_tiles,
                                            member_fractions=fractions or None)
        pred = part["area_stroma"].sum() / (part["area_stroma"].sum() + part["area_tumor"].sum())
        rows.append({"image": Path(image).stem, "true": true_s / (true_s + true_t), "pred": pred,
                     "low": interval.low, "high": interval.high,
                     "member_sd": float(np.std(fractions, ddof=1)) if len(fractions) > 1 else np.nan})
    return pd.DataFrame(rows)


def source_entry(fold: Path, block_tiles: int, calibrated: pd.DataFrame | None = None) -> dict:
    """`calibrated`: every masked fold's images with the interval calibrated without their own
    source (`interval_calibration.cross_source_intervals`); None or empty: sampling only."""
    scores = json.loads((fold / "scores.json").read_text())
    per_label = scores["metrics"]["per_label"]
    entry = {"images": scores["images"],
             "accuracy": {k: v["accuracy"] for k, v in per_label.items() if v.get("annotated")},
             "auroc": {k: v["auroc"] for k, v in per_label.items() if v.get("annotated")}}
    areas = fold / "tile_areas.csv"
    if areas.is_file():
        tiles = pd.read_csv(areas)
        per_image = image_intervals(tiles, block_tiles)
        entry |= {"images": int(tiles["source_image"].nunique()), "tiles": int(len(tiles))}
        inside = (per_image["low"] <= per_image["true"]) & (per_image["true"] <= per_image["high"])
        interval = f"block bootstrap over the image's tiles, {block_tiles}x{block_tiles}-tile blocks"
        entry |= {"tsr_images": int(len(per_image)), **{k: v for k, v in tsr_scores(per_image).items() if k != "images"},
                  "coverage": float(inside.mean()), "mean_interval_width": float((per_image["high"] - per_image["low"]).mean()),
                  "interval": interval}
        mine = calibrated[calibrated["source"] == fold.name] if calibrated is not None and len(calibrated) else None
        if mine is not None and len(mine):  # the coverage column is the calibrated interval's; sampling kept beside
            entry |= {"sampling_coverage": entry["coverage"], "sampling_mean_interval_width": entry["mean_interval_width"],
                      "coverage": float(mine["covered"].mean()),
                      "mean_interval_width": float((mine["cal_high"] - mine["cal_low"]).mean()),
                      "interval": f"{interval}, widened by the model-error margin calibrated without this source "
                                  f"(interval_calibration.py, {float(mine['margin'].iloc[0]):.3f} "
                                  f"{UNITS[mine['scale'].iloc[0]]})"}
    return entry


def main(argv=None) -> int:
    args = parse_args(argv)
    folds = finished_folds(args)
    if not folds:
        raise SystemExit(f"{args.work / args.recipe}: no finished folds (run loso.py first)")
    from interval_calibration import cross_source_intervals, shown_path  # imports this module: not at the top

    calibrated = cross_source_intervals(folds, args.block_tiles)
    sources = {fold.name: source_entry(fold, args.block_tiles, calibrated) for fold in folds}
    rows = []
    for name, e in sources.items():
        cells = [f"{fmt(e['accuracy'].get(k), 2)} / {fmt(e['auroc'].get(k), 2)}" if k in e["accuracy"] else "—"
                 for k in LABELS]
        tsr = [fmt(e.get("mae"), 3), fmt(e.get("spearman"), 2),
               f"{100 * e['high_low_agreement']:.0f}%" if "high_low_agreement" in e else "—",
               f"{100 * e['coverage']:.0f}% (width {e['mean_interval_width']:.2f})" if "coverage" in e else "—"]
        rows.append([name, e["images"], *cells, e.get("tsr_images", "—"), *tsr])
    md = ["# Held-out sources (leave-one-source-out, recipe " + args.recipe + ")\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          "Per-label cells: accuracy at the fold model's tuned thresholds / AUROC (— = not annotated). TSR "
          "columns: images with tumour in their mask; stroma fraction MAE, Spearman, stroma-high/low agreement "
          "(50 %), and the share of images whose mask fraction lies inside the 95 % interval (coverage; where "
          "two or more sources have masks, the interval carries the model-error margin calibrated without the "
          "source, `interval_calibration.py`).\n",
          markdown_table(["held-out source", "images", *LABELS, "TSR images", "MAE", "Spearman", "high/low",
                          "coverage"], rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "folds": {f.name: str(shown_path(f)) for f in folds}, "sources": sources})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
