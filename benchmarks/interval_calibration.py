"""The TSR interval's model-error margin, fitted on held-out sources and tested on a source left out.

Reads the leave-one-source-out folds of a recipe (`loso.py`): for each held-out source with masks
(GlaS, the WSSS4LUAD mask tiles) its tile_areas.csv, the fold model's areas of every tile of a
source it never saw. Per image with tumour in its mask: the mask's stroma fraction, the model's,
and the sampling interval of the image's tiles (`heldout_sources.image_intervals`). Then

(a) fit: the split-conformal margin on every source's images (`ldcsf.analysis.interval_calibration`),
    written as the `interval_calibration` a checkpoint carries (tools/build_shipped_model.py
    embeds it in the shipped model);
(b) test across sources: for each source S, the margin fitted without S, and on S's images the
    coverage (share whose mask fraction lies in the combined interval) and mean width; pooled:
    every image with the margin fitted without its own source. Sampling-only figures beside them;
(c) compare scales: (a) and (b) on every scale the rule knows (`--scale` picks the one written;
    default the fraction itself, the scale on which a margin fitted on one source held on the other).

    .venv/bin/python benchmarks/interval_calibration.py --work benchmarks/results/loso_work
    # the recipe's folds of several seeds pooled (one --work per seed; --fold repeatable per source):
    .venv/bin/python benchmarks/interval_calibration.py --work W/seed0 W/seed1 W/seed2 \
        --fold wsss4luad_masks=W/seed0_with_glas/R/wsss4luad_masks --fold wsss4luad_masks=W/seed1_with_glas/...

Seeds pooled: a source's scores from every seed's fold enter its share together (each source still
weighs the same), so the margin holds for the recipe rather than for one seed's draw, whose margin
alone moved by 1 logit from seed to seed. The same image scored by three seeds is not three
exchangeable images: the finite-sample correction counts them as such, a slight under-correction.
    # after a recipe change, the masked folds retrained (finished ones reused) and refitted, in one command:
    .venv/bin/python benchmarks/interval_calibration.py --run-folds --threads 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, add_fold_option, command_line, fmt, fold_lists, markdown_table, now, write_results
from _recipe import RECIPES, RECOMMENDED
from heldout_sources import IMAGE_BLOCK_TILES, image_intervals
from ldcsf.analysis.interval_calibration import DEFAULT_SCALE, METHODS, UNITS

MASKED_SOURCES = ("glas", "wsss4luad_masks")
LEVEL = 0.95


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=RECOMMENDED, help="default: the recommended recipe, the shipped model's")
    p.add_argument("--work", type=Path, nargs="+", default=[RESULTS / "loso_work"],
                   help="loso.py's --work folder; several (one per seed) pool their folds")
    p.add_argument("--sources", nargs="+", default=list(MASKED_SOURCES), help="held-out sources with masks")
    p.add_argument("--level", type=float, default=LEVEL, help="the interval's coverage")
    p.add_argument("--scale", choices=sorted(METHODS), default=DEFAULT_SCALE,
                   help="the scale the margin is fitted on (every scale is compared in the results either way)")
    p.add_argument("--block-tiles", type=int, default=IMAGE_BLOCK_TILES, help="bootstrap block side, in tiles")
    p.add_argument("--run-folds", action="store_true",
                   help="first run loso.py for these sources in each --work (finished folds are reused, not retrained)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (with --run-folds)")
    add_fold_option(p, "e.g. the WSSS4LUAD fold of loso.py --train-with glas, whose model learnt areas from GlaS's masks")
    p.add_argument("--out", type=Path, default=RESULTS / "interval_calibration", help="results stem (.md, .json)")
    args = p.parse_args(argv)
    args.fold_folders = fold_lists(p, args.fold)
    unknown = sorted(set(args.fold_folders) - set(args.sources))
    if unknown:
        p.error(f"--fold names sources not in --sources: {', '.join(unknown)}")
    return args


def image_table(fold: Path, block_tiles: int, areas_name: str = "tile_areas.csv") -> pd.DataFrame:
    """Per image with tumour in its mask: true and predicted fraction, sampling interval, tile count
    (`areas_name`: the fold's table of tile areas, loso.py's or another prediction's of the same tiles)."""
    areas = fold / areas_name
    if not areas.is_file():
        raise SystemExit(f"{areas}: not found (the fold is unfinished, or its source has no masks; run loso.py)")
    tiles = pd.read_csv(areas)
    per = image_intervals(tiles, block_tiles)
    if per.empty:
        raise SystemExit(f"{areas}: no image with tumour in its mask")
    counts = tiles.groupby(tiles["source_image"].map(lambda p: Path(p).stem)).size()
    return per.assign(source=fold.name, fold=str(shown_path(fold)), tiles=counts.reindex(per["image"]).to_numpy())


def scores(images: pd.DataFrame, scale: str) -> np.ndarray:
    """Each image's conformity score on `scale` (the least margin that covers its mask's fraction)."""
    from ldcsf.analysis.interval_calibration import conformity_scores

    return conformity_scores(images["true"], images["pred"], images["low"], images["high"], scale)


def fit(images: pd.DataFrame, level: float, scale: str = DEFAULT_SCALE, fitted_by: str = "", folds: dict | None = None):
    """The calibration of `images` (all their sources, each weighing the same) on `scale`.

    `folds`: per source, the records of the folds its images came from. A source's `images` counts
    distinct images; with several folds (seeds) `scores` counts every fold's."""
    from ldcsf.analysis.interval_calibration import IntervalCalibration, conformal_margin

    margin = conformal_margin(scores(images, scale), images["source"], level)
    sources = {}
    for name, part in images.groupby("source", sort=False):
        records = (folds or {}).get(name, [])
        sources[name] = {"images": int(part["image"].nunique()),
                         **({"scores": int(len(part)), "folds": records} if len(records) > 1 else
                            records[0] if records else {})}
    return IntervalCalibration(margin=round(margin, 4), scale=scale, level=level, sources=sources, fitted_by=fitted_by)


def apply(images: pd.DataFrame, calibration) -> pd.DataFrame:
    """`images` with the combined interval (cal_low, cal_high) and whether it holds the truth."""
    from ldcsf.analysis.interval_calibration import widen

    ends = [widen(p, lo, hi, calibration) for p, lo, hi in zip(images["pred"], images["low"], images["high"])]
    low, high = np.array(ends).reshape(-1, 2).T
    return images.assign(cal_low=low, cal_high=high, covered=(low <= images["true"]) & (images["true"] <= high),
                         sampling_covered=(images["low"] <= images["true"]) & (images["true"] <= images["high"]))


def summary(scored: pd.DataFrame) -> dict:
    return {"images": int(len(scored)), "coverage": float(scored["covered"].mean()),
            "mean_width": float((scored["cal_high"] - scored["cal_low"]).mean()),
            "sampling_coverage": float(scored["sampling_covered"].mean()),
            "sampling_mean_width": float((scored["high"] - scored["low"]).mean())}


def score_against_tiles(images: pd.DataFrame, scale: str) -> dict:
    """Per source: Spearman of the images' scores against their tile counts (would scaling by tiles help?)."""
    from scipy.stats import spearmanr

    scored = images.assign(score=scores(images, scale))
    return {name: float(spearmanr(part["score"], part["tiles"]).statistic)
            for name, part in scored.groupby("source", sort=False)}


def cross_source(images: pd.DataFrame, level: float, scale: str = DEFAULT_SCALE) -> tuple[dict, pd.DataFrame]:
    """Per source: margin fitted without it and its coverage; every image scored that way (pooled)."""
    results, scored = {}, []
    for name in images["source"].unique():
        others = images[images["source"] != name]
        if others.empty:
            continue  # one source alone cannot be tested on another
        calibration = fit(others, level, scale)
        part = apply(images[images["source"] == name], calibration).assign(margin=calibration.margin, scale=scale)
        scored.append(part)
        results[name] = {"calibrated_on": sorted(others["source"].unique()), "margin": calibration.margin,
                         "scale": scale, **summary(part)}
    return results, (pd.concat(scored, ignore_index=True) if scored else pd.DataFrame())


#: Bands of the stroma fraction in which coverage is told apart (low, around the 50 % cut-off, high).
BANDS = (0.0, 1 / 3, 2 / 3, 1.0)


def coverage_by_band(scored: pd.DataFrame, column: str) -> dict[str, dict]:
    """Coverage and width of `scored` images per band of `column` (`true`: the mask's fraction; `pred`:
    what a user sees): an interval can hold 95 % overall and miss the high-stroma images."""
    names = [f"{low:.2f}-{high:.2f}" for low, high in zip(BANDS, BANDS[1:])]
    bands = pd.cut(scored[column], BANDS, labels=names, include_lowest=True)
    out = {}
    for band, part in scored.groupby(bands, observed=True, sort=True):
        out[str(band)] = {"images": int(len(part)), "coverage": float(part["covered"].mean()),
                                                     "mean_width": float((part["cal_high"] - part["cal_low"]).mean())}
    return out


def scale_comparison(images: pd.DataFrame, level: float) -> dict[str, dict]:
    """Per scale the rule knows: the margin fitted on every source, in-sample width, and each source's
    coverage and width with the margin fitted without it (which scale transfers across sources?)."""
    from ldcsf.analysis.interval_calibration import METHODS

    table = {}
    for scale in METHODS:
        calibration = fit(images, level, scale)
        per_source, pooled = cross_source(images, level, scale)
        table[scale] = {"margin": calibration.margin, "in_sample": summary(apply(images, calibration)),
                        "cross_source": per_source, "pooled": summary(pooled) if len(pooled) else None,
                        "pooled_by_true_fraction": coverage_by_band(pooled, "true") if len(pooled) else {},
                        "pooled_by_predicted_fraction": coverage_by_band(pooled, "pred") if len(pooled) else {}}
    return table


def scale_table(table: dict[str, dict], used: str) -> str:
    sources = list(next(iter(table.values()))["cross_source"])
    rows = [[f"`{scale}`" + (" (used)" if scale == used else ""), fmt(r["margin"], 3),
             f"{100 * r['in_sample']['coverage']:.0f}% ({r['in_sample']['mean_width']:.2f})",
             *[f"{fmt(r['cross_source'][s]['margin'], 3)}: {100 * r['cross_source'][s]['coverage']:.0f}% "
               f"({r['cross_source'][s]['mean_width']:.2f})" for s in sources],
             f"{100 * r['pooled']['coverage']:.0f}% ({r['pooled']['mean_width']:.2f})" if r["pooled"] else "—"]
            for scale, r in table.items()]
    return markdown_table(["scale", "margin fitted on all", "in sample: coverage (width)",
                           *[f"{s}, margin from the others: margin: coverage (width)" for s in sources],
                           "pooled across sources"], rows)


def band_table(table: dict[str, dict]) -> str:
    """Pooled cross-source coverage per band of the true and of the predicted fraction, each scale."""
    rows = []
    for scale, r in table.items():
        for column, key in (("true", "pooled_by_true_fraction"), ("predicted", "pooled_by_predicted_fraction")):
            rows.append([f"`{scale}`", f"{column} fraction",
                         *[f"{100 * b['coverage']:.0f}% of {b['images']} ({b['mean_width']:.2f})" for b in r[key].values()]])
    bands = next(iter(table.values()))["pooled_by_true_fraction"]
    return markdown_table(["scale", "banded by", *bands], rows)


def cross_source_intervals(folds, block_tiles: int = IMAGE_BLOCK_TILES, level: float = LEVEL,
                           scale: str = DEFAULT_SCALE) -> pd.DataFrame:
    """Every masked fold's images with the interval calibrated without their own source (heldout_sources.py).

    `folds`: fold folders, each named after its held-out source; those without masks are skipped."""
    folds = [f for f in folds if (f / "tile_areas.csv").is_file()]
    if len(folds) < 2:
        return pd.DataFrame()
    return cross_source(pd.concat([image_table(f, block_tiles) for f in folds], ignore_index=True), level, scale)[1]


def fold_record(fold: Path) -> dict:
    """What names a fold's model in the calibration's record: its folder and its weights' digest."""
    from ldcsf.models.packaged_weights import file_sha256

    model = fold / "run" / "model.pt"
    return {"fold": str(shown_path(fold)),
            "model_sha256": file_sha256(model) if model.is_file() else None}


def shown_path(path: Path) -> Path:
    """A work folder as a checkout sees it (benchmarks/results/...), wherever the folds were read."""
    parts = path.resolve().parts
    return Path(*parts[parts.index("benchmarks"):]) if "benchmarks" in parts else path


def run_folds(args) -> None:
    import loso

    for work in args.work:
        loso_args = ["--recipes", args.recipe, "--sources", *args.sources, "--work", str(work),
                     "--out", str(args.out.with_name(args.out.name + "_folds"))]
        loso.main([*loso_args, *(["--threads", str(args.threads)] if args.threads else [])])


def fold_table(by_fold: dict[str, dict]) -> str:
    """Coverage and width per fold (one row per seed's fold)."""
    return markdown_table(["fold", "images", "coverage", "mean width"],
                          [[f"`{fold}`", r["images"], f"{100 * r['coverage']:.0f}%", fmt(r["mean_width"], 2)]
                           for fold, r in by_fold.items()])


def calibration_folds(args) -> list[Path]:
    """Every fold to read: per source its --fold folders, else WORK/RECIPE/SOURCE in each --work."""
    return [folder for s in args.sources
            for folder in args.fold_folders.get(s, [work / args.recipe / s for work in args.work])]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_folds:
        run_folds(args)
    folds = calibration_folds(args)
    images = pd.concat([image_table(f, args.block_tiles) for f in folds], ignore_index=True)
    records: dict[str, list] = {}
    for f in folds:
        records.setdefault(f.name, []).append(fold_record(f))
    works = ", ".join(str(shown_path(w)) for w in args.work)
    calibration = fit(images, args.level, args.scale, folds=records,
                      fitted_by=f"benchmarks/interval_calibration.py on the {args.recipe} folds in {works}, {now()}")
    fitted = apply(images, calibration)
    in_sample = summary(fitted)
    by_fold = {fold: summary(part) for fold, part in fitted.groupby("fold", sort=False)}
    against_tiles = score_against_tiles(images, args.scale)
    per_source, pooled = cross_source(images, args.level, args.scale)
    by_scale = scale_comparison(images, args.level)
    unit = UNITS[args.scale]
    cross_by_fold = {fold: summary(part) for fold, part in pooled.groupby("fold", sort=False)} if len(pooled) else {}
    rows = [[name, ", ".join(r["calibrated_on"]), r["images"], fmt(r["margin"], 3),
             f"{100 * r['coverage']:.0f}%", fmt(r["mean_width"], 2),
             f"{100 * r['sampling_coverage']:.0f}%", fmt(r["sampling_mean_width"], 2)] for name, r in per_source.items()]
    if len(pooled):
        p = summary(pooled)
        rows.append(["pooled", "each image: without its source", p["images"], "—", f"{100 * p['coverage']:.0f}%",
                     fmt(p["mean_width"], 2), f"{100 * p['sampling_coverage']:.0f}%", fmt(p["sampling_mean_width"], 2)])
    counts = ", ".join(f"{name} {record['images']}" for name, record in calibration.sources.items())
    seeds = len(folds) > len(args.sources)  # some source scored by several folds: show each
    md = [f"# The TSR interval's model-error margin, calibrated on held-out sources (recipe {args.recipe})\n",
          f"- command: `{command_line()}`\n- folds: " + ", ".join(f"`{shown_path(f)}`" for f in folds) + f"\n- date: {now()}\n",
          f"Per image with tumour in its mask, each fold's model never saw the image's source. Interval: the "
          f"image's tile bootstrap ({args.block_tiles}x{args.block_tiles}-tile blocks) widened on the {args.scale} scale "
          f"by a split-conformal margin at {args.level:.0%} (`ldcsf.analysis.interval_calibration`). "
          "Coverage: share of images whose mask fraction lies in the interval.\n",
          f"Fitted on every source (the calibration a checkpoint carries): margin "
          f"**{calibration.margin:.3f} {unit}** from {len(images)} scores of "
          f"{sum(r['images'] for r in calibration.sources.values())} images in {len(folds)} folds "
          f"({counts}); in-sample coverage "
          f"{100 * in_sample['coverage']:.0f}%, mean width {in_sample['mean_width']:.2f}.\n",
          *(["Each fold with that margin (in sample; the seeds' spread):\n", fold_table(by_fold), ""] if seeds else []),
          "Across sources (margin fitted without the source it is tested on):\n",
          markdown_table(["tested on", "calibrated on", "scored images", "margin", "coverage", "mean width",
                          "sampling only: coverage", "sampling only: width"], rows),
          *(["\nAcross sources, each fold (the seeds' spread):\n", fold_table(cross_by_fold)] if seeds else []),
          "\nWhich scale: each scale the rule knows, fitted and tested the same way (coverage, mean width "
          "in brackets). A margin that transfers is one fitted on one source that holds on the other:\n",
          scale_table(by_scale, args.scale),
          "\nAcross sources, pooled, by band of the stroma fraction (coverage of the images in the band, mean "
          "width in brackets):\n",
          band_table(by_scale),
          "\nDo images with more tiles need less margin? Spearman of the scores against the images' tile counts: "
          + ", ".join(f"{name} {rho:+.2f}" for name, rho in against_tiles.items()) + ".\n"]
    write_results(args.out, "\n".join(md), {
        "command": command_line(), "date": now(), "recipe": args.recipe,
        # what `ldcsf train --interval-calibration THIS_FILE` checks a run against
        "recipe_settings": RECIPES.get(args.recipe), "work": [str(shown_path(w)) for w in args.work],
        "level": args.level, "block_tiles": args.block_tiles, "interval_calibration": calibration.to_dict(),
        "in_sample": in_sample, "in_sample_by_fold": by_fold, "cross_source": per_source, "cross_source_by_fold": cross_by_fold, "score_vs_tiles_spearman": against_tiles, "by_scale": by_scale, "pooled": summary(pooled) if len(pooled) else None})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
