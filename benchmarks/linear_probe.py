"""Linear probe on the frozen backbone, held out by source: the baseline every trained head must beat.

For each held-out source, on exactly loso.py's fold (the same manifest, the other sources' train
and test splits for training, their val split for thresholds), the frozen backbone's maps are
pooled per tile (one 112 µm window: a 128 px input at 0.875 µm/px) and

- a ridge regression (scikit-learn, penalty chosen by efficient leave-one-out) fits each tile's
  stroma and tumour area fraction, on the tiles whose masks give one;
- a logistic regression fits each presence label, on the tiles that annotate it;

then the held-out source is scored as loso.py and heldout_sources.py score a fold: per-label
accuracy (thresholds by Youden's J on val) and AUROC, and where it has masks the stroma fraction
per image (MAE, Spearman, high/low agreement) from the tiles' predicted areas. The maps come from
the training's cache (benchmarks/results/feature_cache, the recipe's backbone, resampling and
views), so nothing is computed twice. Each fold writes scores.json and tile_areas.csv under
<--work>/<probe name>/<source>/, where heldout_sources.py and heldout_compare.py read them.
The fit has no random draws: one run stands for every seed.

    .venv/bin/python benchmarks/linear_probe.py --sources glas nct_crc oral --work benchmarks/results/heldout_work/seed0
    .venv/bin/python benchmarks/linear_probe.py --sources wsss4luad_masks --train-with glas --work benchmarks/results/heldout_work/seed0
    .venv/bin/python benchmarks/linear_probe.py --stain-norm macenko ...   # probe name linear_probe_macenko
(A source held out whose fold has no other mask tiles, WSSS4LUAD without --train-with glas, has no area to
fit: refused with a message.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from _recipe import RECIPES, RECOMMENDED, feature_cache_dir
from loso import (EXTRA_HELD_OUT, HELD_OUT, area_aurocs, extra_rows, fold_manifest, has_masks, image_tsr, label_rows, pancancer,
                  tsr_scores, with_extra_sources)
from ldcsf.benchmarking import machine_info

#: Ridge penalties tried (after standardising the features); the leave-one-out error picks one.
RIDGE_ALPHAS = np.logspace(-1, 5, 13)
#: Logistic regression's inverse penalty on standardised features: a fixed, fairly strong penalty,
#: as 1,280 features outnumber the training tiles.
LOGISTIC_C = 0.05


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", default=["glas", "nct_crc", "oral"], choices=[*HELD_OUT, *EXTRA_HELD_OUT])
    p.add_argument("--train-with", nargs="+", default=[], choices=list(EXTRA_HELD_OUT),
                   help="add these sources to every fold's training (folds go to <--work>_with_<names>, as loso.py's)")
    p.add_argument("--recipe", default=RECOMMENDED, choices=list(RECIPES),
                   help="the recipe whose frozen backbone, input size and views give the maps")
    p.add_argument("--stain-norm", choices=["macenko"], default=None,
                   help="Macenko-normalise the tiles before the backbone (probe name linear_probe_macenko)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--work", type=Path, default=RESULTS / "loso_work")
    p.add_argument("--out", type=Path, default=None, help="results stem (.md, .json); default <--work>/<probe name>")
    p.add_argument("--quick", action="store_true", help="a few images per source: a smoke run for tests")
    args = p.parse_args(argv)
    args.extra_work = args.work
    if args.train_with:
        args.work = args.work.with_name(f"{args.work.name}_with_{'_'.join(args.train_with)}")
    args.name = "linear_probe" + (f"_{args.stain_norm}" if args.stain_norm else "")
    return args


class FrozenMaps:
    """Pooled backbone maps of manifest rows, read from (or added to) the training's feature cache."""

    def __init__(self, args):
        from ldcsf.data.manifest import default_labels
        from ldcsf.options import TrainConfig
        from ldcsf.training.area_data import FeatureCache
        from ldcsf.training.train import build_model, build_stain_normalizer

        recipe = dict(RECIPES[args.recipe])
        if not recipe.get("freeze_backbone"):
            raise SystemExit(f"recipe {args.recipe}: a linear probe needs a frozen backbone (freeze_backbone=True)")
        recipe["stain_norm"] = args.stain_norm
        config = TrainConfig(data="", out="", **recipe)
        self.labels = list(default_labels())
        model = build_model(config, self.labels)
        data = model.data_config()
        # The same key as the training's cache (train.frozen_backbone_data): maps are shared, never recomputed.
        self.cache = FeatureCache(feature_cache_dir(RESULTS) if not args.quick else args.work / "cache", model,
                                  data["input_size"], data["mean"], data["std"], self.labels,
                                  interpolation=data["interpolation"], stain_normalizer=build_stain_normalizer(config))
        self.views = int(config.feature_views)

    def pooled(self, frame, views: int):
        """(N, views, C) maps averaged over the tile, (N, views, L) area fractions (NaN without a mask)."""
        import torch

        from ldcsf.data.manifest import Manifest

        manifest = Manifest(frame=frame.reset_index(drop=True), root=Path("/"), labels=self.labels)
        features, areas = self.cache.load(manifest, views, progress=False)
        return features.float().mean((-2, -1)).numpy(), torch.nanmean(areas.float(), (-2, -1)).numpy()


def fit_areas(x: np.ndarray, areas: np.ndarray, labels: list[str], where: str) -> dict:
    """One ridge per label that has area targets; stroma and tumour are required (they make a TSR)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fits = {}
    for j, name in enumerate(labels):
        known = np.isfinite(areas[:, j])
        if known.sum() >= 2:
            fits[name] = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(x[known], areas[known, j])
    missing = [name for name in ("stroma", "tumor") if name not in fits]
    if missing:
        raise SystemExit(f"{where}: no mask tiles give a {' or '.join(missing)} area to fit "
                         "(hold out a source whose fold keeps other masks, or add --train-with glas)")
    return fits


def fit_presence(x: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """One logistic regression per label annotated with both classes; the others get their base rate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fits = {}
    for j, name in enumerate(labels):
        known = np.isfinite(targets[:, j])
        y = targets[known, j]
        if len(np.unique(y)) == 2:
            fits[name] = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=2000)).fit(x[known], y)
        else:
            fits[name] = float(y.mean()) if len(y) else 0.5
    return fits


def predict_presence(fits: dict, x: np.ndarray, labels: list[str]) -> np.ndarray:
    return np.stack([fits[n].predict_proba(x)[:, 1] if not isinstance(fits[n], float) else np.full(len(x), fits[n])
                     for n in labels], axis=1)


def predict_areas(fits: dict, x: np.ndarray, labels: list[str]) -> np.ndarray:
    """(N, L) tile areas clipped to [0, 1]; NaN for labels without area targets."""
    return np.stack([np.clip(fits[n].predict(x), 0, 1) if n in fits else np.full(len(x), np.nan) for n in labels],
                    axis=1)


def run_fold(source: str, full: Path, maps: FrozenMaps, args) -> dict:
    import pandas as pd
    from PIL import Image

    from ldcsf.evaluation.metrics import compute_metrics
    from ldcsf.evaluation.thresholds import tune_thresholds
    from ldcsf.options import TrainConfig
    from ldcsf.utils.atomic import write_json_atomic, write_text_atomic

    fold = args.work / args.name / source
    done = fold / "scores.json"
    if done.is_file():
        return json.loads(done.read_text())
    labels = maps.labels
    frame = pd.read_csv(fold_manifest(full, source, fold / "manifest.csv"))
    train, val = frame[frame["split"].eq("train")], frame[frame["split"].eq("val")]
    held = extra_rows(source, args) if source in EXTRA_HELD_OUT else pd.read_csv(full).query("dataset == @source")
    started = time.perf_counter()
    # Every cached view of a training tile is a row (each view's area moved with its crop), as the heads see them.
    x, areas = maps.pooled(train, maps.views)
    targets = np.repeat(train[labels].to_numpy(dtype=np.float32)[:, None], maps.views, axis=1)
    x, areas, targets = x.reshape(-1, x.shape[-1]), areas.reshape(-1, len(labels)), targets.reshape(-1, len(labels))
    area_fits = fit_areas(x, areas, labels, where=f"{source} held out")
    presence_fits = fit_presence(x, targets, labels)
    val_x = maps.pooled(val, 1)[0][:, 0]
    thresholds = tune_thresholds(predict_presence(presence_fits, val_x, labels), val[labels].to_numpy(np.float32),
                                 method=TrainConfig.threshold_method)
    fit_seconds = time.perf_counter() - started
    held_x = maps.pooled(held, 1)[0][:, 0]
    probs = predict_presence(presence_fits, held_x, labels)
    report = compute_metrics(probs, held[labels].to_numpy(dtype=np.float32), labels, thresholds).to_dict()
    tile_areas = predict_areas(area_fits, held_x, labels)
    tsr = None
    if has_masks(held):  # tile areas kept beside the scores, as loso.py keeps a fold's
        with Image.open(held["path"].iloc[0]) as first:
            tile_px = first.width
        table = held[["path", "source_image", "x", "y", "frac_stroma", "frac_tumor"]].assign(
            row=held["y"] // tile_px, col=held["x"] // tile_px,
            **{f"area_{name}": tile_areas[:, j] for j, name in enumerate(labels)})
        write_text_atomic(fold / "tile_areas.csv", table.to_csv(index=False))
        tsr = tsr_scores(image_tsr(held, tile_areas, labels))
    stroma = labels.index("stroma")
    result = {"recipe": args.name, "source": source, "images": int(len(held)), "metrics": report,
              "called_stroma": float(np.mean(probs[:, stroma] >= thresholds[stroma])),
              "mean_p_stroma": float(np.mean(probs[:, stroma])), **({"tsr": tsr} if tsr is not None else {}),
              "area_auroc": area_aurocs(tile_areas, held, labels),
              "training_seconds": fit_seconds, "thresholds": thresholds,
              "ridge_alpha": {n: float(f[-1].alpha_) for n, f in area_fits.items()}}
    write_json_atomic(done, result)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    full = with_extra_sources(pancancer(args), args)
    maps = FrozenMaps(args)
    results = []
    for source in args.sources:
        print(f"-- {args.name}, {source} held out", file=sys.stderr, flush=True)
        results.append(run_fold(source, full, maps, args))
    labels = ["stroma", "necrosis", "non_tumor", "tumor"]
    machine = machine_info("cpu")
    md = [f"# Linear probe held out by source (backbone of {args.recipe}"
          f"{', Macenko-normalised tiles' if args.stain_norm else ''})\n",
          provenance(machine, command_line(), now()),
          "Each row: ridge (areas) and logistic (presence) fits on the pooled frozen maps of the fold's training "
          "tiles, scored on all images of the held-out source. Cells: accuracy at the val-tuned thresholds / "
          "AUROC (— = not annotated); 'training s': the fits' time.\n",
          markdown_table(["held-out source", "probe", "images", *labels, "called stroma", "training s"],
                         label_rows(results, labels))]
    scored = [r for r in results if r.get("tsr")]
    if scored:
        md += ["\nStroma fraction per held-out image with tumour in its mask (predicted tile areas summed).\n",
               markdown_table(["held-out source", "probe", "images", "MAE", "Spearman", "high/low agreement"],
                              [[r["source"], r["recipe"], r["tsr"]["images"], fmt(r["tsr"]["mae"], 3),
                                fmt(r["tsr"]["spearman"], 2), f"{100 * r['tsr']['high_low_agreement']:.0f}%"]
                               for r in scored])]
    out = args.out or args.work / args.name / "summary"
    write_results(out, "\n".join(md), {"command": command_line(), "date": now(), "machine": machine.to_dict(),
                                       "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
