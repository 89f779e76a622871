"""Heads of several recipes' fold models averaged: would an ensemble across views of the tissue
(e.g. heads on plain and on Macenko-normalised maps) do better on sources never trained on?

Trains nothing. For each seed and held-out source it loads the fold model of every recipe that
loso.py left (frozen backbones: each recipe's cached view-0 maps, with its own stain
normalisation), takes the members named (all by default; `lite0_area_mid_ens5:0,1,2` takes three
of five), averages their presence and area logits as one `--ensemble` checkpoint does, and
scores the average as loso.py scores a fold: presence AUROCs, area AUROCs, and on the masked
sources the stroma fraction per image (tile_areas.csv with each member's areas, so
interval_calibration.py reads it). The result is written as a fold of the recipe `--name`
under the same work folders, so heldout_compare.py compares it with the recipes it averages:

    R="lite0_area_mid_ens5:0,1,2 lite0_area_mid_macenko_ens3"
    .venv/bin/python benchmarks/view_ensemble.py --recipes $R --name mid_views_ens3x2 --seeds 0 1 2
    .venv/bin/python benchmarks/heldout_compare.py --seeds 0 1 2 --recipes ... mid_views_ens3x2 \
        --with-glas wsss4luad_masks nct_crc oral

Accuracies are at the first recipe's tuned thresholds (the average was tuned on no split): read
its AUROCs, not its accuracies. A real ensemble across views would run the backbone once per
view at prediction; this measures whether that cost would buy anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, now
from _recipe import RECIPES, feature_cache_dir

SOURCES = ("glas", "wsss4luad_masks", "nct_crc", "oral")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", required=True,
                   help="RECIPE or RECIPE:i,j,... (members i, j of its ensemble); frozen-backbone recipes")
    p.add_argument("--name", required=True, help="the averaged model's name: its folds go to <work>/<name>/<source>/")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    p.add_argument("--root", type=Path, default=RESULTS / "heldout_work", help="holds seed<K>/ work folders")
    p.add_argument("--with-glas", nargs="*", default=["wsss4luad_masks", "nct_crc", "oral"],
                   help="sources whose folds were trained with --train-with glas (read from seed<K>_with_glas)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--quick", action="store_true", help="read folds of loso.py --quick (their own rows and cache)")
    args = p.parse_args(argv)
    args.parts = [parse_part(p, item) for item in args.recipes]
    return args


def parse_part(parser, item: str) -> tuple[str, list[int] | None]:
    """`RECIPE` -> (RECIPE, None: every member); `RECIPE:0,2` -> (RECIPE, [0, 2])."""
    recipe, _, members = item.partition(":")
    if recipe not in RECIPES:
        parser.error(f"{item}: unknown recipe {recipe!r}")
    if not RECIPES[recipe].get("freeze_backbone"):
        parser.error(f"{item}: {recipe} trains its backbone; only frozen-backbone folds are read from cached maps")
    try:
        return recipe, [int(m) for m in members.split(",")] if members else None
    except ValueError:
        parser.error(f"{item}: members must be integers, e.g. {recipe}:0,1,2")


def member_logits(model_file: Path, frame, cache_dir: Path):
    """Each member's presence logits (K, N, L) and area logit maps (K, N, L, h, w) on the held-out rows,
    from the fold's cached view-0 maps; the labels; the thresholds."""
    import torch

    import loso
    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.models.ensemble import ensemble_size

    loaded = load_checkpoint(model_file)
    model, meta = loaded.model, loaded.meta
    maps = loso.cached_view0_maps(loaded, frame, cache_dir)
    with torch.inference_mode():
        if ensemble_size(model) > 1:
            logits, areas = model.member_outputs(maps)
        else:  # one head: a one-member stack
            neck = model.forward_neck(maps)
            logits, areas = model.forward_head(neck)[None], model.area_logits(neck)[None]
    return logits, areas, list(meta.labels), list(meta.thresholds)


def averaged_fold(parts, folders: list[Path], frame, cache_dir: Path):
    """The selected members of every part (its fold in `folders`, in the same order), stacked:
    (probs (N, L), areas (N, L), member areas (K, N, L)), labels, thresholds."""
    import torch

    logits, areas, labels, thresholds = [], [], None, None
    for (recipe, members), folder in zip(parts, folders, strict=True):
        lg, ar, lb, th = member_logits(folder / "run" / "model.pt", frame, cache_dir)
        if labels is not None and lb != labels:
            raise SystemExit(f"{folder}: labels {lb} differ from the first recipe's {labels}")
        labels, thresholds = labels or lb, thresholds or th
        keep = members if members is not None else list(range(lg.shape[0]))
        if not all(0 <= k < lg.shape[0] for k in keep):
            raise SystemExit(f"{folder}: {recipe} has {lg.shape[0]} member(s), asked for {keep}")
        logits.append(lg[keep])
        areas.append(ar[keep])
    logits, areas = torch.cat(logits), torch.cat(areas)
    # Logits averaged over members before the sigmoid, as an ensemble checkpoint's outputs are.
    probs = torch.sigmoid(logits.mean(0)).numpy()
    mean_areas = torch.sigmoid(areas.mean(0)).mean((-2, -1)).numpy()
    member_areas = torch.sigmoid(areas).mean((-2, -1)).numpy()
    return probs, mean_areas, member_areas, labels, thresholds


def held_rows(source: str, seed_work: Path, args):
    """The held-out rows as loso.py scored them: GlaS's tiles from the seed's folder, the others from the manifest."""
    import pandas as pd

    import loso

    args = loso.parse_args(["--work", str(seed_work), "--train-with", "glas", "--data", str(args.data),
                            *(["--quick"] if args.quick else [])])
    if source in loso.EXTRA_HELD_OUT:
        return loso.extra_rows(source, args)
    frame = pd.read_csv(loso.with_extra_sources(loso.pancancer(args), args))
    return frame[frame["dataset"].eq(source)]


def score_fold(args, seed: int, source: str) -> dict | None:
    """Average the parts' fold models of one seed and source; write the fold's scores (None: a part not run)."""
    from PIL import Image

    import loso
    from ldcsf.evaluation.metrics import compute_metrics
    from ldcsf.utils.atomic import write_json_atomic

    work = args.root / (f"seed{seed}_with_glas" if source in args.with_glas else f"seed{seed}")
    # A list, not a dict by recipe: one recipe may come twice with other members.
    folders = [work / recipe / source for recipe, _ in args.parts]
    missing = [str(f) for f in folders if not (f / "run" / "model.pt").is_file()]
    if missing:
        print(f"   seed {seed}, {source}: skipped, fold(s) not run: {', '.join(missing)}", file=sys.stderr)
        return None
    held = held_rows(source, args.root / f"seed{seed}", args)
    # loso.py's cache: one for all folds, or a quick run's own beside its folds
    cache_dir = work / "cache" if args.quick else feature_cache_dir(RESULTS)
    probs, areas, member_areas, labels, thresholds = averaged_fold(args.parts, folders, held, cache_dir)
    out = work / args.name / source
    out.mkdir(parents=True, exist_ok=True)
    tsr = None
    if loso.has_masks(held):
        with Image.open(held["path"].iloc[0]) as first:
            tile_px = first.width
        held[["path", "source_image", "x", "y", "frac_stroma", "frac_tumor"]].assign(
            row=held["y"] // tile_px, col=held["x"] // tile_px,
            **{f"area_{name}": areas[:, i] for i, name in enumerate(labels)},
            **loso.member_columns(member_areas, labels)).to_csv(out / "tile_areas.csv", index=False)
        tsr = loso.tsr_scores(loso.image_tsr(held, areas, labels))
    report = compute_metrics(probs, held[labels].to_numpy(dtype=np.float32), labels, thresholds).to_dict()
    result = {"recipe": args.name, "averages": args.recipes, "source": source, "images": int(len(held)),
              "members": int(member_areas.shape[0]), "metrics": report,
              **({"tsr": tsr} if tsr is not None else {}),
              "area_auroc": loso.area_aurocs(areas, held, labels), "command": command_line(), "date": now()}
    write_json_atomic(out / "scores.json", result)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for seed in args.seeds:
        for source in args.sources:
            result = score_fold(args, seed, source)
            if result:
                line = {k: round(v, 3) if isinstance(v, float) else v for k, v in (result.get("tsr") or {}).items()}
                print(f"seed {seed}, {source}: {result['members']} members, "
                      f"{line or json.dumps(result['area_auroc'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
