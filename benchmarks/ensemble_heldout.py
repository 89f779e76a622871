"""One head against an ensemble of three, GlaS held out: does the members' spread make the
per-image stroma interval hold the mask's fraction more often, and what does the mean cost or gain?

Trains the recommended recipe (`_recipe.RECOMMENDED`) with one head and with `ensemble=3` (seeds 0, 1,
2 on the same cached backbone maps, each in its own order over them) on every default source, as
`loso.py` does for a held-out source, and scores each GlaS image with tumour in its mask: stroma fraction MAE, Spearman and
stroma-high/low agreement of the model's estimated areas (the ensemble's mean) against the mask,
and coverage, the share of images whose mask fraction lies in the 95 % interval. The interval is
`heldout_sources.py`'s (tile bootstrap within the image); for the ensemble it is widened by the
spread of the members' own fractions of that image (`analysis.uncertainty`).

    .venv/bin/python benchmarks/ensemble_heldout.py --threads 2

Finished folds are kept under --work (a rerun only rescores them); --results moves every
intermediate (pan-cancer manifest, backbone-map cache) away from benchmarks/results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

import loso
from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, write_results
from _recipe import RECIPES, RECOMMENDED
from heldout_sources import IMAGE_BLOCK_TILES, image_intervals

ENSEMBLE = 3
SOURCE = "glas"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=ENSEMBLE, help="heads in the ensemble")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the intermediates (manifest, map cache)")
    p.add_argument("--work", type=Path, default=None, help="fold folder (default: RESULTS/loso_work_ensemble)")
    p.add_argument("--out", type=Path, default=RESULTS / "ensemble_glas", help="results stem (.md, .json)")
    p.add_argument("--quick", action="store_true", help="loso.py's smoke run: a few images, 2 steps")
    return p.parse_args(argv)


def score(recipe: str, full: Path, args, fold_args) -> dict:
    start = time.time()
    result = loso.run_fold(recipe, SOURCE, full, fold_args)
    fold = fold_args.work / recipe / SOURCE
    tiles = pd.read_csv(fold / "tile_areas.csv")
    # loso.py writes each member's areas for an ensemble; image_intervals widens by their spread.
    per_image = image_intervals(tiles, IMAGE_BLOCK_TILES)
    members = float(per_image["member_sd"].mean()) if RECIPES[recipe].get("ensemble", 1) > 1 else None
    inside = (per_image["low"] <= per_image["true"]) & (per_image["true"] <= per_image["high"])
    return {"recipe": recipe, **result["tsr"], "coverage": float(inside.mean()),
            "mean_interval_width": float((per_image["high"] - per_image["low"]).mean()),
            "mean_member_sd": members, "training_seconds": result["training_seconds"],
            "seconds": time.time() - start}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loso.RESULTS = args.results  # the manifest and the map cache that loso's folds use
    # One head: the recommended recipe itself, or `<name>_k1` where the recipe already is an ensemble
    # (on the plain view alone, where the recipe's heads read two).
    single_head = {k: v for k, v in RECIPES[RECOMMENDED].items() if k not in ("ensemble", "ensemble_views")}
    plain_single = RECIPES[RECOMMENDED].get("ensemble", 1) == 1 and not RECIPES[RECOMMENDED].get("ensemble_views")
    one = RECOMMENDED if plain_single else f"{RECOMMENDED}_k1"
    ensemble = f"{RECOMMENDED}_k{args.members}"
    RECIPES[one], RECIPES[ensemble] = single_head, {**single_head, "ensemble": args.members}
    work = args.work or args.results / "loso_work_ensemble"
    fold_args = loso.parse_args(["--recipes", RECOMMENDED, "--sources", SOURCE, "--work", str(work), "--data", str(args.data),
                                 *(["--quick"] if args.quick else [])])
    full = loso.pancancer(fold_args)
    results = [score(recipe, full, args, fold_args) for recipe in (one, ensemble)]
    rows = [[r["recipe"], r["images"], fmt(r["mae"], 3), fmt(r["spearman"], 2), f"{100 * r['high_low_agreement']:.0f}%",
             f"{100 * r['coverage']:.0f}%", fmt(r["mean_interval_width"], 2), fmt(r["mean_member_sd"], 3),
             fmt(r["training_seconds"], 0)] for r in results]
    md = [f"# One head against {args.members}, GlaS held out (recipe {RECOMMENDED})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          "Per GlaS image with tumour in its mask: stroma fraction of the model's estimated areas (an ensemble's "
          "mean) against the mask's; coverage: share of images whose mask fraction lies in the 95 % interval "
          "(tile bootstrap within the image, widened by the members' spread for the ensemble).\n",
          markdown_table(["recipe", "images", "MAE", "Spearman", "high/low", "coverage", "mean width",
                          "mean member sd", "training s"], rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
