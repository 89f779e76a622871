"""What each tissue class is read as on a source never trained on: the area head's estimate per class.

A TSR counts only the areas the model calls stroma and tumour, so a tissue the area head reads as
stroma (lymphocytes, debris, smooth muscle) raises the stroma fraction wherever it lies in the
section. The sources that label whole tiles by their dominant tissue (NCT-CRC-HE's nine classes,
oral, LC25000, osteosarcoma) show it class by class: this script runs each leave-one-source-out
fold model (`loso.py`, one per seed) over its own held-out source and tabulates, per source class,
the mean estimated area of every label, the share of tiles whose largest area is each label, and
the tiles' mean stroma / (stroma + tumour). Trains nothing; reads the folds' model.pt.

    R=lite0_area_mid_views_ens3; W=benchmarks/results/heldout_work
    .venv/bin/python benchmarks/heldout_tissue_classes.py --recipe $R --work $W/seed0_with_glas $W/seed1_with_glas \\
        $W/seed2_with_glas --sources nct_crc oral
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, command_line, fmt, markdown_table, now, write_results
from _recipe import RECOMMENDED

LABELS = ("stroma", "necrosis", "non_tumor", "tumor")
MANIFEST = RESULTS / "tsr_work" / "pancancer" / "manifest_capped.csv"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=RECOMMENDED)
    p.add_argument("--work", type=Path, nargs="+", required=True,
                   help="loso.py work folders (one per seed); each fold is WORK/RECIPE/SOURCE/run/model.pt")
    p.add_argument("--sources", nargs="+", default=["nct_crc", "oral"], help="held-out sources labelled per tile")
    p.add_argument("--manifest", type=Path, default=MANIFEST,
                   help="the pan-cancer manifest the folds were cut from (loso.py's, absolute paths)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_tissue_classes", help="results stem (.md, .json)")
    return p.parse_args(argv)


def class_table(tiles: pd.DataFrame) -> pd.DataFrame:
    """Per (source, source_class): tiles, folds, mean area of each label, share of tiles whose largest
    area is each label, and mean stroma / (stroma + tumour). `tiles`: one row per tile and fold with
    columns source, source_class, fold and area_<label>."""
    areas = tiles[[f"area_{name}" for name in LABELS]].to_numpy()
    largest = np.array(LABELS)[areas.argmax(axis=1)]
    s, t = tiles["area_stroma"].to_numpy(), tiles["area_tumor"].to_numpy()
    frame = tiles.assign(largest=largest, stroma_share=np.divide(s, s + t, out=np.full(len(s), np.nan), where=(s + t) > 0))
    rows = []
    for (source, cls), part in frame.groupby(["source", "source_class"], sort=True):
        row = {"source": source, "source_class": cls, "tiles": int(part.groupby("fold").size().iloc[0]),
               "folds": int(part["fold"].nunique()),
               **{f"area_{name}": float(part[f"area_{name}"].mean()) for name in LABELS},
               **{f"largest_{name}": float((part["largest"] == name).mean()) for name in LABELS},
               "stroma_share": float(np.nanmean(part["stroma_share"])) if part["stroma_share"].notna().any() else None}
        rows.append(row)
    return pd.DataFrame(rows)


def fold_tiles(model_file: Path, held: pd.DataFrame, fold: str) -> pd.DataFrame:
    """The held-out rows with the fold model's mean estimated area of each label per tile."""
    from loso import tile_areas  # imports torch: only when predicting

    areas = tile_areas(model_file, held)
    return held[["source", "source_class"]].assign(fold=fold, **{f"area_{n}": areas[:, i] for i, n in enumerate(LABELS)})


def folds_of(args) -> list[tuple[str, Path]]:
    """(source, model file) of every finished fold; a missing one is named and fails the run."""
    found, missing = [], []
    for source in args.sources:
        for work in args.work:
            model = work / args.recipe / source / "run" / "model.pt"
            (found if model.is_file() else missing).append((source, model))
    if missing:
        raise SystemExit("no fold model (run loso.py for it): " + ", ".join(str(m) for _, m in missing))
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.manifest.is_file():
        raise SystemExit(f"{args.manifest}: not found (loso.py builds it on its first run)")
    manifest = pd.read_csv(args.manifest)
    tiles = []
    for source, model in folds_of(args):
        held = manifest[manifest["dataset"].eq(source)].assign(source=source)
        if held.empty:
            raise SystemExit(f"{args.manifest}: no rows of source {source!r}")
        print(f"-- {source}: {model}", file=sys.stderr, flush=True)
        tiles.append(fold_tiles(model, held.reset_index(drop=True), str(model.parent.parent)))
    table = class_table(pd.concat(tiles, ignore_index=True))
    rows = [[r.source, r.source_class, r.tiles, r.folds, *[fmt(getattr(r, f"area_{n}"), 2) for n in LABELS],
             ", ".join(f"{n} {100 * getattr(r, f'largest_{n}'):.0f}%" for n in LABELS if getattr(r, f"largest_{n}") >= 0.005),
             fmt(r.stroma_share, 2)] for r in table.itertuples()]
    md = [f"# What each tissue class is read as on a source never trained on (recipe {args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          "Each fold model (one per seed) was trained without the source and run over all its tiles. Per source "
          "class: mean estimated area of each label (the area head's share of the tile; what a TSR adds up), the "
          "labels that hold the largest area (share of tiles, all folds), and the mean stroma / (stroma + tumour).\n",
          markdown_table(["source", "class", "tiles", "folds", *LABELS, "largest area", "stroma / (stroma + tumour)"], rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "work": [str(w) for w in args.work], "classes": table.to_dict("records")})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
