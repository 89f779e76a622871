"""Where a recipe's held-out stroma-fraction error lies, from the folds loso.py kept (trains nothing).

For each masked source's fold (its `tile_areas.csv`) and seed: the error's bias and spread, the
range of the true fractions (a narrow range ranks worse for the same scatter), the tile-level
Spearman of the stroma share, how much of a tile's area the area head gives to none of its labels
against the masks, and the same scores when the ensemble's image fractions are averaged in other
ways (plain-view heads only, Macenko-view heads only, median of the members).

    .venv/bin/python benchmarks/heldout_error_anatomy.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from _common import RESULTS, add_masked_fold_options, command_line, finished_masked_folds, markdown_table, now, write_results
from _recipe import RECIPES
from loso import tsr_scores

LABELS = ("stroma", "necrosis", "non_tumor", "tumor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_masked_fold_options(p)
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_error_anatomy", help="results stem (.md, .json)")
    return p.parse_args(argv)


def fold_tiles(root: Path, recipe: str, seed: int) -> dict[str, pd.DataFrame]:
    folds = finished_masked_folds(root, recipe, [seed])
    return {source: pd.read_csv(folder / "tile_areas.csv") for _, source, folder in folds}


def image_fractions(tiles: pd.DataFrame, members: list[list[int]]) -> pd.DataFrame:
    """Per image with tumour in its mask: the true fraction, the model's, each member group's mean of
    its members' image fractions, the members' spread (standard deviation) and the image's tiles."""
    rows = []
    for image, part in tiles.groupby("source_image"):
        if part["frac_tumor"].sum() <= 0:
            continue  # a TSR is scored in tumours
        fraction = lambda s, t: s / (s + t)  # noqa: E731
        per_member = [fraction(part[f"member{m}_area_stroma"].sum(), part[f"member{m}_area_tumor"].sum())
                      for m in range(sum(map(len, members)))]
        rows.append({"image": image, "tiles": len(part),
                     "true": fraction(part["frac_stroma"].sum(), part["frac_tumor"].sum()),
                     "pred": fraction(part["area_stroma"].sum(), part["area_tumor"].sum()),
                     "median": float(np.median(per_member)), "spread": float(np.std(per_member)),
                     **{f"view{v}": float(np.mean([per_member[m] for m in group])) for v, group in enumerate(members)}})
    return pd.DataFrame(rows)


def anatomy(tiles: pd.DataFrame, view_members: dict[str, list[int]]) -> dict:
    images = image_fractions(tiles, list(view_members.values()))
    tissue = tiles[(tiles["frac_stroma"] + tiles["frac_tumor"]) > 0.2]
    tile_true = tissue["frac_stroma"] / (tissue["frac_stroma"] + tissue["frac_tumor"])
    tile_pred = tissue["area_stroma"] / (tissue["area_stroma"] + tissue["area_tumor"]).clip(lower=1e-9)
    averages = {"mean of all heads": "pred", "median of the heads": "median",
                **{f"{view} heads only": f"view{v}" for v, view in enumerate(view_members)}}
    return {"images": int(len(images)), "bias": float((images["pred"] - images["true"]).mean()),
            "true_p10_p90": [float(q) for q in images["true"].quantile([0.1, 0.9])],
            "tile_spearman": float(spearmanr(tile_true, tile_pred).statistic),
            "unlabelled_area_share": float((1 - tiles[[f"area_{k}" for k in LABELS]].sum(axis=1)).mean()),
            "mask_unlabelled_share": float((1 - tiles["frac_stroma"] - tiles["frac_tumor"]).mean()),
            "averages": {name: tsr_scores(pd.DataFrame({"true": images["true"], "pred": images[column]}))
                         for name, column in averages.items()}}


def main(argv=None) -> int:
    args = parse_args(argv)
    views = RECIPES[args.recipe].get("ensemble_views") or ["plain"]
    k = RECIPES[args.recipe].get("ensemble", 1)
    if k < 2:
        raise SystemExit(f"{args.recipe}: not an ensemble (its folds have no member columns)")
    view_members = {view: list(range(i * k, (i + 1) * k)) for i, view in enumerate(views)}  # k heads per view, in order
    results = {seed: {source: anatomy(tiles, view_members) for source, tiles in fold_tiles(args.root, args.recipe, seed).items()}
               for seed in args.seeds}
    rows, avg_rows = [], []
    for source in ("glas", "wsss4luad_masks"):
        per_seed = [results[s][source] for s in args.seeds]
        mean = lambda key: float(np.mean([e[key] for e in per_seed]))  # noqa: E731
        rows.append([source, per_seed[0]["images"], f"{mean('bias'):+.3f}",
                     "{:.2f}–{:.2f}".format(*per_seed[0]["true_p10_p90"]),  # the masks': the same in every seed
                     f"{mean('tile_spearman'):.2f}", f"{100 * mean('unlabelled_area_share'):.0f} %",
                     f"{100 * mean('mask_unlabelled_share'):.0f} %"])
        for name in per_seed[0]["averages"]:
            scores = [e["averages"][name] for e in per_seed]
            avg_rows.append([source, name, f"{np.mean([s['mae'] for s in scores]):.3f}",
                             f"{np.mean([s['spearman'] for s in scores]):.2f}",
                             f"{100 * np.mean([s['high_low_agreement'] for s in scores]):.0f} %"])
    md = [f"# Where the held-out stroma-fraction error lies ({args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n- seeds: {args.seeds} (means over them)\n",
          markdown_table(["held-out source", "images", "bias (pred − true)", "true fraction, 10th–90th pct",
                          "tile-level Spearman", "tile area given to no label", "in the masks"], rows),
          "\nThe image's stroma fraction with the ensemble's members averaged in other ways:\n",
          markdown_table(["held-out source", "average", "MAE", "Spearman", "high/low"], avg_rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "results": {str(s): r for s, r in results.items()}})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
