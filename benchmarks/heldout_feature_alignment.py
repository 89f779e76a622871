"""Does aligning a new lab's backbone maps with the training tissue's help on sources never trained on?

A frozen backbone's map of another lab's tissue sits away from the training tiles' maps (90 % of
GlaS's tiles lie beyond the training tiles' own 95th percentile of distance,
heldout_error_signals.py): stain, scanner and cut shift every channel. Re-estimating normalisation
statistics on the target's own data (AdaBN, Li et al. 2016) is the classic label-free fix. On a
frozen backbone it comes down to moving each channel of the held-out maps onto the training maps'
mean and spread before the heads read them, which needs no retraining. Measured on the masked
folds loso.py kept (GlaS held out; WSSS4LUAD held out with GlaS in training), with the statistics
taken over

- nothing (the fold as trained: the baseline);
- the whole held-out source (a cohort from one lab: every tile of every image, benign GlaS too);
- each image alone (one slide at a time, as `ldcsf slide` runs): the image's own composition moves
  its statistics, so this one may remove the very stroma share it should measure;

each with the mean alone moved, or the mean and the spread.

    .venv/bin/python benchmarks/heldout_feature_alignment.py --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, add_masked_fold_options, command_line, each_masked_fold, markdown_table, now, write_results
from loso import cached_view0_maps, image_tsr, tsr_scores

#: (statistics taken over, what is moved)
MODES = {"none": (None, None), "source_mean": ("source", "mean"), "source_mean_std": ("source", "mean_std"),
         "image_mean": ("image", "mean"), "image_mean_std": ("image", "mean_std")}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_masked_fold_options(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_feature_alignment", help="results stem (.md, .json)")
    return p.parse_args(argv)


def channel_stats(maps) -> tuple:
    """Per-channel mean and standard deviation over tiles and positions, shaped to broadcast over (N, C, h, w)."""
    import torch

    std, mean = torch.std_mean(maps, dim=(0, 2, 3), keepdim=True)
    return mean, std.clamp_min(1e-6)


def align(maps, reference: tuple, groups: np.ndarray | None, move: str):
    """`maps` with each group's channels moved onto `reference`'s mean (and spread with "mean_std")."""
    import torch

    out = maps.clone()
    target_mean, target_std = reference
    for group in ([None] if groups is None else np.unique(groups)):
        rows = slice(None) if group is None else torch.from_numpy(np.flatnonzero(groups == group))
        mean, std = channel_stats(maps[rows])
        scale = target_std / std if move == "mean_std" else 1.0
        out[rows] = (maps[rows] - mean) * scale + target_mean
    return out


def tile_areas_from_maps(model, maps) -> np.ndarray:
    """(N, labels) mean area per tile, as loso.py scores a frozen fold (the members' mean logit, then the sigmoid)."""
    import torch

    with torch.inference_mode():
        return torch.sigmoid(model.area_logits(model.forward_neck(maps))).mean((-2, -1)).numpy()


def fold_scores(folder: Path, cache_dir: Path) -> dict:
    from ldcsf.checkpoint import load_checkpoint

    loaded = load_checkpoint(folder / "run" / "model.pt")
    model, labels = loaded.model.eval(), list(loaded.meta.labels)
    manifest = pd.read_csv(folder / "manifest.csv")
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    tiles = pd.read_csv(folder / "tile_areas.csv")
    held = tiles.assign(**{name: np.nan for name in labels})  # the cache's manifest reads label columns (unused here)
    reference = channel_stats(cached_view0_maps(loaded, train, cache_dir))
    maps = cached_view0_maps(loaded, held, cache_dir)
    scores = {}
    for mode, (over, move) in MODES.items():
        moved = maps if over is None else align(maps, reference, None if over == "source" else
                                                held["source_image"].to_numpy(), move)
        per_image = image_tsr(held, tile_areas_from_maps(model, moved), labels)
        scores[mode] = {**tsr_scores(per_image), "bias": float((per_image["pred"] - per_image["true"]).mean())}
    return scores


def main(argv=None) -> int:
    from _recipe import feature_cache_dir

    args = parse_args(argv)
    results = each_masked_fold(args, lambda folder, source: fold_scores(folder, feature_cache_dir(RESULTS)))
    rows = []
    for source, per_seed in results.items():
        for mode in MODES:
            found = [r[mode] for r in per_seed.values()]
            mean = lambda key: float(np.mean([f[key] for f in found]))  # noqa: E731
            rows.append([source, mode, str(len(found)), f"{mean('mae'):.3f}", f"{mean('spearman'):.2f}",
                         f"{100 * mean('high_low_agreement'):.0f} %", f"{mean('bias'):+.3f}",
                         " ".join(f"{f['mae']:.3f}" for f in found)])
    md = [f"# Held-out maps aligned with the training tissue's ({args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n- seeds: {args.seeds}\n",
          markdown_table(["held-out source", "statistics", "seeds", "MAE", "Spearman", "high/low", "bias", "MAE by seed"], rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
