"""Recipes' stroma fractions on the masked held-out sources, scored on the images all of them score.

A recipe with a wider field (lite0_area_context224, `_recipe.field_um`) cuts WSSS4LUAD in 224 px
tiles, which drops the images under 224 px on a side, so heldout_compare.py scores it over fewer
images than a 112 µm recipe. This reads each fold's tile_areas.csv (left by loso.py under
<--root>/seed<K>/, and seed<K>_with_glas/ for the sources in --with-glas), keeps the images with
tumour in their mask that every recipe scores (matched by file name), and scores each recipe on
them: MAE, Spearman and high/low agreement of the stroma fraction per image, per seed and mean.
Each fold keeps its own true fraction (the mask's areas over its own tiles, as loso.py scores),
so the truth still differs a little between fields where tiles overlap or are skipped. Trains nothing.

    .venv/bin/python benchmarks/heldout_same_images.py --seeds 0 1 2 --recipes lite0_area lite0_area_context224 \
        --out benchmarks/results/heldout_context224_same_images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, command_line, fmt, markdown_table, now, write_results
from loso import MASKED, image_tsr, tsr_scores


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=RESULTS / "heldout_work", help="holds seed<K>/ work folders")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipes", nargs="+", default=["lite0_area", "lite0_area_context224"])
    p.add_argument("--with-glas", nargs="*", default=["wsss4luad_masks"],
                   help="sources whose folds were trained with --train-with glas (read from seed<K>_with_glas)")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_context224_same_images", help="results stem (.md, .json)")
    args = p.parse_args(argv)
    if len(args.recipes) < 2:
        p.error("--recipes needs at least two recipes to compare")
    return args


def per_image(root: Path, seed: int, recipe: str, source: str, with_glas: list[str]) -> pd.DataFrame:
    """True and predicted stroma fraction per image with tumour (index: the image's file stem)."""
    folder = root / (f"seed{seed}_with_glas" if source in with_glas else f"seed{seed}")
    path = folder / recipe / source / "tile_areas.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (run loso.py for {recipe}, seed {seed}, {source} held out first)")
    tiles = pd.read_csv(path)
    per = image_tsr(tiles, tiles[["area_stroma", "area_tumor"]].to_numpy(), ["stroma", "tumor"])
    # GlaS's resampled images sit in one folder per field: the file name is what the folds share.
    per.index = [Path(p).stem for p in per.index]
    return per


def compare(args) -> tuple[dict, dict]:
    """({recipe: {seed or "mean": {source: scores}}}, {source: {seed: images dropped by some recipe}})."""
    out = {r: {} for r in args.recipes}
    dropped = {source: {} for source in MASKED}
    for seed in args.seeds:
        for source in MASKED:
            frames = {r: per_image(args.root, seed, r, source, args.with_glas) for r in args.recipes}
            common = sorted(set.intersection(*(set(f.index) for f in frames.values())))
            dropped[source][seed] = sorted(set.union(*(set(f.index) for f in frames.values())) - set(common))
            for recipe, frame in frames.items():
                out[recipe].setdefault(seed, {})[source] = tsr_scores(frame.loc[common])
    for recipe, rows in out.items():
        rows["mean"] = {source: {key: float(np.mean([rows[s][source][key] for s in args.seeds]))
                                 for key in ("images", "mae", "spearman", "high_low_agreement")}
                        for source in MASKED}
    return out, dropped


def main(argv=None) -> int:
    args = parse_args(argv)
    results, dropped = compare(args)
    lines = []
    for recipe, rows in results.items():
        for seed, row in rows.items():
            cells = []
            for source in MASKED:
                s = row[source]
                cells += [fmt(s["images"], 0), fmt(s["mae"], 3), fmt(s["spearman"], 2),
                          f"{100 * s['high_low_agreement']:.0f}%"]
            lines.append([recipe, seed, *cells])
    left_out = "; ".join(f"{source}: {', '.join(sorted(set(sum(per.values(), [])))) or 'none'}"
                         for source, per in dropped.items())
    md = ["# Stroma fraction on the images every recipe scores (leave-one-source-out, seed by seed)\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          "Per held-out image with tumour in its mask, stroma / (stroma + tumour): each recipe's estimated areas "
          "summed over its fold's tiles against the mask's, on the images all recipes score. Images left out "
          f"(scored by some recipe only): {left_out}.\n",
          markdown_table(["recipe", "seed", "GlaS images", "GlaS MAE", "GlaS Spearman", "GlaS high/low",
                          "WSSS4LUAD images", "WSSS4LUAD MAE", "WSSS4LUAD Spearman", "WSSS4LUAD high/low"], lines)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "seeds": args.seeds,
                                            "results": {r: {str(k): v for k, v in rows.items()}
                                                        for r, rows in results.items()},
                                            "left_out": {s: {str(k): v for k, v in per.items()}
                                                         for s, per in dropped.items()}})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
