"""Does flip test-time augmentation (`ldcsf slide --tta`) help on sources never trained on?

For each masked fold of a recipe (GlaS held out; WSSS4LUAD held out with GlaS in training; one per
seed), every held-out tile goes through the fold model as `ldcsf slide` runs it (`BatchPredictor`
on the tile as the checkpoint prepares it), once plainly and once with `tta` (the tile and its two
mirror images, the area maps flipped back and averaged). Per image with tumour in its mask: the
stroma fraction against the mask (MAE, Spearman, high/low) and the 95 % interval's coverage across
sources (the margin fitted on the other source's folds of the same mode). Each fold's tile areas
are kept beside loso.py's (`tile_areas_slide_plain.csv`, `tile_areas_slide_tta.csv`, each with the
seconds per tile it took); a rerun reads them back.

    .venv/bin/python benchmarks/heldout_tta.py --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, add_masked_fold_options, command_line, fmt, markdown_table, masked_folds, now, write_results
from interval_calibration import LEVEL, cross_source, image_table, summary
from loso import member_columns, tsr_scores

MODES = ("plain", "tta")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_masked_fold_options(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_tta", help="results stem (.md, .json)")
    return p.parse_args(argv)


def folds_of(args) -> list[tuple[int, Path]]:
    folds = [(seed, folder) for seed in args.seeds for folder in masked_folds(args.root, args.recipe, seed).values()]
    missing = [str(f) for _, f in folds if not (f / "tile_areas.csv").is_file() or not (f / "run" / "model.pt").is_file()]
    if missing:
        raise SystemExit("no finished fold (run loso.py for it): " + ", ".join(missing))
    return folds


def slide_areas(fold: Path, mode: str, batch_size: int) -> tuple[Path, float]:
    """The fold's held-out tiles' areas as `ldcsf slide` computes them (with `mode`), and seconds per tile."""
    out = fold / f"tile_areas_slide_{mode}.csv"
    timing = out.with_suffix(".seconds_per_tile")
    if out.is_file():  # read back, with the time of the run that made it where it was kept
        return out, float(timing.read_text()) if timing.is_file() else float("nan")
    import torch

    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import eval_transforms
    from ldcsf.inference.batch_predictor import BatchPredictor

    tiles = pd.read_csv(fold / "tile_areas.csv")
    loaded = load_checkpoint(fold / "run" / "model.pt")
    labels = list(loaded.meta.labels)
    predictor = BatchPredictor(loaded.model.eval(), tta=mode == "tta", members=True, channels_last=False)
    transform = eval_transforms(loaded.meta)
    means, members = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(tiles), batch_size):
            batch = torch.stack([transform(load_rgb(p)) for p in tiles["path"].iloc[first:first + batch_size]])
            result = predictor.predict_images(batch)
            means.append(result["areas"].mean((-2, -1)).numpy())
            if "member_areas" in result:
                members.append(result["member_areas"].mean((-2, -1)).numpy())  # (N, K, L)
    seconds = (time.perf_counter() - start) / len(tiles)
    areas = np.concatenate(means)
    member_areas = np.concatenate(members).transpose(1, 0, 2) if members else None
    table = tiles[["path", "source_image", "x", "y", "frac_stroma", "frac_tumor", "row", "col"]].assign(
        **{f"area_{name}": areas[:, i] for i, name in enumerate(labels)}, **member_columns(member_areas, labels))
    table.to_csv(out, index=False)
    timing.write_text(f"{seconds:.6f}\n")
    return out, seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    folds = folds_of(args)
    per_fold, images, timing = [], {mode: [] for mode in MODES}, {mode: [] for mode in MODES}
    for seed, fold in folds:
        for mode in MODES:
            print(f"-- {fold} ({mode})", file=sys.stderr, flush=True)
            path, seconds = slide_areas(fold, mode, args.batch_size)
            if np.isfinite(seconds):
                timing[mode].append(seconds)
            table = image_table(fold, 1, path.name).assign(seed=seed)
            images[mode].append(table)
            per_fold.append({"seed": seed, "source": fold.name, "mode": mode,
                             **tsr_scores(table)})
    # How far the slide path's plain areas are from loso.py's (cached backbone maps): the baseline's check.
    drift = max(float(np.abs(pd.read_csv(f / "tile_areas_slide_plain.csv")["area_stroma"]
                             - pd.read_csv(f / "tile_areas.csv")["area_stroma"]).max()) for _, f in folds)
    results = {}
    for mode in MODES:
        frame = pd.concat(images[mode], ignore_index=True)
        per_source, pooled = cross_source(frame, LEVEL)
        folds_here = [r for r in per_fold if r["mode"] == mode]
        results[mode] = {
            "by_source": {source: {key: float(np.nanmean([np.nan if r[key] is None else r[key]  # None: under 3 images
                                                          for r in folds_here if r["source"] == source]))
                                   for key in ("mae", "spearman", "high_low_agreement")}
                          for source in ("glas", "wsss4luad_masks")},
            "coverage": {source: r["coverage"] for source, r in per_source.items()},
            "pooled": summary(pooled), "seconds_per_tile": float(np.mean(timing[mode])) if timing[mode] else None}
    rows = []
    for mode, r in results.items():
        g, w = r["by_source"]["glas"], r["by_source"]["wsss4luad_masks"]
        rows.append([f"`{mode}`", f"{g['mae']:.3f} / {g['spearman']:.2f} / {100 * g['high_low_agreement']:.0f}%",
                     f"{w['mae']:.3f} / {w['spearman']:.2f} / {100 * w['high_low_agreement']:.0f}%",
                     f"{100 * r['coverage']['glas']:.0f}% / {100 * r['coverage']['wsss4luad_masks']:.0f}%",
                     fmt(r["pooled"]["mean_width"], 2), fmt(1000 * r["seconds_per_tile"], 1) if r["seconds_per_tile"] else "—"])
    seed_rows = [[r["seed"], r["source"], f"`{r['mode']}`", f"{r['mae']:.3f}", fmt(r["spearman"], 2),
                  f"{100 * r['high_low_agreement']:.0f}%"] for r in per_fold]
    md = [f"# Flip test-time augmentation on sources never trained on (recipe {args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n",
          "Each fold model scores its held-out source's tiles as `ldcsf slide` does, without and with `--tta`. "
          "Means over the seeds; coverage: the 95 % interval with the margin fitted on the other source's folds "
          f"of the same mode. Largest difference between the plain slide path and loso.py's cached-map areas: "
          f"{drift:.4f} (stroma area of a tile).\n",
          markdown_table(["mode", "GlaS MAE / Spearman / high-low", "WSSS4LUAD MAE / Spearman / high-low",
                          "coverage GlaS / WSSS4LUAD", "mean width", "ms per tile"], rows),
          "\nEach fold:\n", markdown_table(["seed", "held out", "mode", "MAE", "Spearman", "high/low"], seed_rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "results": results, "folds": per_fold,
                                            "plain_vs_cached_max_difference": drift})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
