"""Does anything the model knows at run time tell which held-out images it gets wrong?

On a source it never saw, a slide's stroma fraction is off by about 0.12 on average, and the TSR
interval carries that as one model-error margin for every slide. A signal that ranked the error
image by image would let the interval be narrow where the model is right and wide where it is not.
Three signals a slide run has, each ranked against each held-out image's absolute error (Spearman),
from the masked sources' folds loso.py kept (GlaS held out; WSSS4LUAD held out with GlaS in training):

- **ensemble spread**: the standard deviation of the members' image stroma fractions (what widens
  the interval of `ldcsf slide` today);
- **distance from the training tissue**: each tile's Mahalanobis distance from the fold's training
  tiles, on the backbone map's per-channel mean and standard deviation (covariance shrunk by
  Ledoit–Wolf: 448 dimensions from about 2,000 tiles), averaged over the image's tiles; this runs
  the fold's backbone over its training and held-out tiles (about a minute a fold on 2 threads);
- **tiles**: how much tissue the image has (fewer tiles, more sampling error).

    .venv/bin/python benchmarks/heldout_error_signals.py --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from _common import RESULTS, add_masked_fold_options, command_line, each_masked_fold, markdown_table, now, write_results
from heldout_error_anatomy import image_fractions

SIGNALS = {"spread": "ensemble spread", "distance": "distance from the training tissue", "tiles": "tiles"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_masked_fold_options(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-distance", action="store_true", help="skip the distance (no backbone run; tile tables only)")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_error_signals", help="results stem (.md, .json)")
    return p.parse_args(argv)


def pooled_maps(model, transform, images: list, batch: int = 64) -> np.ndarray:
    """Each image's (a path or a PIL image) backbone map summarised as its channels' mean and
    standard deviation: (N, 2C)."""
    import torch

    from ldcsf.data.dataset import load_rgb

    out = []
    for start in range(0, len(images), batch):
        x = torch.stack([transform(load_rgb(i) if isinstance(i, (str, Path)) else i) for i in images[start:start + batch]])
        with torch.inference_mode():
            maps = model.forward_backbone(x).float()
        out.append(torch.cat([maps.mean((2, 3)), maps.std((2, 3))], 1).numpy())
    return np.concatenate(out)


def training_distance(train: np.ndarray, query: np.ndarray, quantile: float | None = None):
    """Mahalanobis distance of each `query` row from the rows of `train` (Ledoit–Wolf covariance:
    the plain estimate is singular or nearly so with a few thousand rows in hundreds of dimensions);
    with `quantile`, also that quantile of the training rows' own distances."""
    from sklearn.covariance import LedoitWolf

    fit = LedoitWolf().fit(train)
    distance = np.sqrt(fit.mahalanobis(query))
    return distance if quantile is None else (distance, float(np.quantile(np.sqrt(fit.mahalanobis(train)), quantile)))


def fold_distances(folder: Path) -> tuple[np.ndarray, float]:
    """Every held-out tile's distance from the fold's training tiles (`tile_areas.csv` order), and
    the 95th percentile of the training tiles' own."""
    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.data.transforms import eval_transforms

    loaded = load_checkpoint(folder / "run" / "model.pt")
    model, transform = loaded.model.eval(), eval_transforms(loaded.meta.input_spec)
    manifest = pd.read_csv(folder / "manifest.csv")
    # Not the training's feature cache: its maps are read with the cache's own resampling, and the
    # held-out tiles must be summarised exactly as the training ones are.
    train = pooled_maps(model, transform, list(manifest.loc[manifest["split"] == "train", "path"]))
    tiles = pd.read_csv(folder / "tile_areas.csv")
    return training_distance(train, pooled_maps(model, transform, list(tiles["path"])), quantile=0.95)


def image_errors(tiles: pd.DataFrame) -> pd.DataFrame:
    """Per image with tumour in its mask (as loso.py scores a TSR): the absolute error of the ensemble's
    stroma fraction and each signal (`distance` only when the tiles carry one)."""
    members = sum(c.startswith("member") and c.endswith("_area_stroma") for c in tiles.columns)
    images = image_fractions(tiles, [list(range(members))])
    images["error"] = (images["pred"] - images["true"]).abs()
    if "distance" in tiles:
        images["distance"] = images["image"].map(tiles.groupby("source_image")["distance"].mean())
    return images


def signal_scores(images: pd.DataFrame) -> dict:
    """For each signal: Spearman with the error (and its p), and the mean error in its lower and upper thirds."""
    scores = {}
    for signal in SIGNALS:
        if signal not in images or images[signal].isna().all():
            continue
        rho = spearmanr(images[signal], images["error"])
        low, high = images[signal].quantile([1 / 3, 2 / 3])
        scores[signal] = {"spearman": float(rho.statistic), "p": float(rho.pvalue),
                          "error_low_third": float(images.loc[images[signal] <= low, "error"].mean()),
                          "error_high_third": float(images.loc[images[signal] >= high, "error"].mean())}
    return scores


def fold_result(folder: Path, distance: bool) -> dict:
    """One fold's images, MAE and signal scores (with `distance`, the backbone runs over its tiles)."""
    tiles = pd.read_csv(folder / "tile_areas.csv")
    entry: dict = {}
    if distance:
        print("  the backbone over the fold's training and held-out tiles", flush=True)
        tiles["distance"], training_p95 = fold_distances(folder)
        # Whether the distance tells the new source from the training tissue at all.
        entry["tiles_beyond_training_p95"] = float((tiles["distance"] > training_p95).mean())
    images = image_errors(tiles)
    return {"images": int(len(images)), "mae": float(images["error"].mean()), "signals": signal_scores(images), **entry}


def main(argv=None) -> int:
    args = parse_args(argv)
    results = each_masked_fold(args, lambda folder, source: fold_result(folder, not args.no_distance))
    rows = []
    for source, per_seed in results.items():
        for signal, name in SIGNALS.items():
            found = [r["signals"][signal] for r in per_seed.values() if signal in r["signals"]]
            if not found:
                continue
            mean = lambda key: float(np.mean([f[key] for f in found]))  # noqa: E731
            rows.append([source, name, f"{mean('spearman'):+.2f}",
                         " ".join(f"{f['spearman']:+.2f}" for f in found), f"{min(f['p'] for f in found):.2f}",
                         f"{mean('error_low_third'):.3f}", f"{mean('error_high_third'):.3f}"])
    far_rows = [[source, " ".join(f"{100 * r['tiles_beyond_training_p95']:.0f} %" for r in per_seed.values())]
                for source, per_seed in results.items() if all("tiles_beyond_training_p95" in r for r in per_seed.values())]
    md = [f"# Which held-out images the model gets wrong: signals at run time ({args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n- seeds: {args.seeds}\n",
          markdown_table(["held-out source", "signal", "Spearman with the abs. error (mean)", "by seed", "smallest p",
                          "mean abs. error, lowest third of the signal", "highest third"], rows)]
    if far_rows:
        md += ["\nHeld-out tiles further from the training tiles than 95 % of the training tiles themselves:\n",
               markdown_table(["held-out source", "by seed"], far_rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
