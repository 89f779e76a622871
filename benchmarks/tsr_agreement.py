"""Does the predicted stroma fraction agree with pixel-level ground truth?

Each WSSS4LUAD validation image that has a pixel mask (0 tumour, 1 stroma, 2 normal, 3 background)
is written as a small pyramidal TIFF and run through the slide pipeline like any slide; its
predicted stroma fraction, stroma / (stroma + tumour) area, is compared with the mask's:
mean absolute error, Spearman correlation, agreement on stroma-high (> 50 %) vs stroma-low, and a
Bland–Altman plot.

Leakage: the pan-cancer training set cuts its stroma-labelled tiles almost all from these very
images, so a model trained on it has seen them. The default mode is therefore cross-validated:
the images are split into `--folds` folds (an image is its own group); for each fold a model is
trained on the pan-cancer set minus that fold's mask tiles and scores only that fold's images.
Every image is scored by a model that never saw it. Each fold's checkpoint and predictions are
kept under `--work`: a rerun skips finished folds, an interrupted training resumes.

    .venv/bin/python benchmarks/tsr_agreement.py --threads 1            # 3-fold, trains 3 models
    .venv/bin/python benchmarks/tsr_agreement.py --recipe lite0_area --threads 2   # a recipe of _recipe.py
    .venv/bin/python benchmarks/tsr_agreement.py --checkpoint runs/x/model.pt   # one given model

With `--recipe`, each fold trains that recipe (benchmarks/_recipe.py) on the pan-cancer set with
the oral source capped as in the leave-one-source-out benchmark. A model with an area head
scores its TSR from estimated areas (the slide default), its mask tiles from their mean area.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from _recipe import RECIPES, cap_source, feature_cache_dir
from ldcsf.benchmarking import machine_info

STROMA, TUMOR = 1, 0  # WSSS4LUAD palette indices
HIGH_CUTOFF = 0.5
#: WSSS4LUAD crops carry no resolution. At 1.0 µm/px a mini-model tile (128 px at 0.875 µm/px)
#: spans 112 image pixels: the tile size the pan-cancer builder cuts from the same images.
DEFAULT_MPP = 1.0
#: Training epochs per fold. One epoch of ldcsf_swin_mini on the pan-cancer set (about 1,000
#: training images, 1 thread) took 100 s including start-up while another training shared the
#: 2 cores, so about a minute on idle cores: 6 epochs x 3 folds plus scoring is about 20-25 minutes.
DEFAULT_EPOCHS = 6
MASK_DATASET = "wsss4luad_masks"  # the pan-cancer manifest's name for the mask tiles
GROUP_PREFIX = "wsss4luad:val-"  # ... and their group: one per validation image


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path,
                   help="score every image with this model instead of cross-validating (it may have seen them)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds over the images (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment and of training")
    p.add_argument("--model", default="ldcsf_swin_mini", help="variant trained per fold")
    p.add_argument("--recipe", choices=list(RECIPES), help="train this recipe per fold instead of --model/--epochs")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs per fold")
    p.add_argument("--max-steps", type=int, default=-1, help="cap on training steps per fold")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--mpp", type=float, default=DEFAULT_MPP, help="µm/px of the WSSS4LUAD images")
    p.add_argument("--overlap", type=float, default=0.5, help="tile overlap (small images need it for enough tiles)")
    p.add_argument("--weighting", choices=["probability", "decision", "estimated_area"], default=None,
                   help="TSR weighting (default: the slide default, area when the model has an area head)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (quick runs)")
    p.add_argument("--work", type=Path, default=RESULTS / "tsr_work", help="slides, runs and per-image outputs")
    p.add_argument("--out", type=Path, default=RESULTS / "tsr_agreement", help="results stem (.md, .json, .png)")
    p.add_argument("--quick", action="store_true",
                   help="3 images, micro model, a few training steps on a small manifest: a smoke run for tests")
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error(f"--folds must be at least 2, got {args.folds}")
    if args.recipe:
        args.model = args.recipe
    if args.quick:
        args.limit = args.limit or 3
        args.max_steps = 2 if args.max_steps < 0 else args.max_steps
        args.epochs = 1
        args.model = "ldcsf_swin_micro" if args.model == "ldcsf_swin_mini" else args.model
    return args


# -- ground truth ------------------------------------------------------------------------------
def image_mask_pairs(validation: Path) -> list[tuple[Path, Path]]:
    """(image, mask) for every validation image that has both (images 31-39 lack theirs)."""
    images, masks = validation / "img", validation / "mask"
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(f"{validation}: expected img/ and mask/ folders of WSSS4LUAD validation")
    pairs = [(img, masks / img.name) for img in sorted(images.glob("*.png")) if (masks / img.name).is_file()]
    if not pairs:
        raise FileNotFoundError(f"{validation}: no image has a mask of the same name")
    return pairs


def true_stroma_fraction(mask_path: Path) -> float | None:
    from ldcsf.data.masks import read_mask

    mask = read_mask(mask_path)
    stroma, tumor = int((mask == STROMA).sum()), int((mask == TUMOR).sum())
    return stroma / (stroma + tumor) if stroma + tumor else None


# -- prediction through the slide pipeline ---------------------------------------------------------
def as_slide(image: Path, slides: Path, mpp: float) -> Path:
    """The image as a small pyramidal TIFF at `mpp` (reused when present)."""
    from ldcsf.data.dataset import load_rgb
    from ldcsf.wsi.writer import write_pyramidal_tiff

    path = slides / f"{image.stem}.tiff"
    if not path.is_file():
        write_pyramidal_tiff(path, np.asarray(load_rgb(image)), mpp=mpp, tile_size=64, compression="deflate")
    return path


def predict_fraction(slide: Path, checkpoint, out_dir: Path, args) -> tuple[float | None, int, str]:
    """(predicted stroma fraction, tiles, note) of one small slide."""
    from ldcsf.wholeslide.pipeline import NoTissueError, SlideSettings, run_slide

    settings = SlideSettings(mpp=args.mpp, overlap=args.overlap, batch_size=32, num_workers=0, accelerator="cpu",
                             devices=1, progress=False)
    try:
        run_slide(slide, checkpoint, out_dir, settings)
    except NoTissueError as exc:
        return None, 0, str(exc).split(": ", 1)[-1]
    # tsr.json holds the slide's TSR under the pipeline's default (probability) weighting.
    slide_tsr = json.loads((out_dir / "tsr.json").read_text())["tsr"]
    fraction = slide_tsr["stroma_fraction"]
    if args.weighting is not None and args.weighting != slide_tsr.get("weighting", "probability"):
        fraction = _fraction_from_tiles(out_dir, args.weighting)
    return fraction, int(slide_tsr.get("n_tiles") or 0), slide_tsr.get("note", "")


def _fraction_from_tiles(out_dir: Path, weighting: str) -> float | None:
    """Recompute from the tile table with the asked weighting (the library's own TSR)."""
    import pandas as pd

    from ldcsf.analysis.tsr import compute_tsr

    table = next(iter(sorted(out_dir.glob("tiles.*"))), None)
    if table is None:
        raise FileNotFoundError(f"{out_dir}: no tile table written")
    tiles = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table)
    return compute_tsr(tiles, weighting=weighting).stroma_fraction


# -- cross-validation: folds, per-fold training data, per-fold models -------------------------------
def assign_folds(image_ids: list[str], folds: int, seed: int) -> dict[str, int]:
    """{image id: fold}: a seeded shuffle cut into `folds` near-equal parts (an image is its own group)."""
    if len(image_ids) < folds:
        raise ValueError(f"{len(image_ids)} images cannot fill {folds} folds (use fewer --folds or a larger --limit)")
    order = np.random.default_rng(seed).permutation(len(image_ids))
    return {image_ids[i]: fold for fold, part in enumerate(np.array_split(order, folds)) for i in part}


def pancancer_manifest(args) -> Path:
    """The shared pan-cancer manifest (built once under --work), paths absolute so it can be filtered."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest
    from ldcsf.data.pancancer import build_pancancer

    absolute = args.work / "pancancer" / "manifest_absolute.csv"
    if args.recipe:  # recipes train on the capped set (see _recipe.ORAL_CAP)
        capped = absolute.with_name("manifest_capped.csv")
        if not capped.is_file():
            write_manifest(cap_source(pd.read_csv(pancancer_manifest(argparse.Namespace(**{**vars(args), "recipe": None})))),
                           capped)
        return capped
    if absolute.is_file():
        return absolute
    built = build_pancancer(args.data, args.work / "pancancer", seed=0, progress=not args.quick)
    frame = pd.read_csv(built)
    for column in ("path", "mask"):
        frame[column] = [str((built.parent / p).resolve()) if isinstance(p, str) else p for p in frame[column]]
    write_manifest(frame, absolute)
    return absolute


def fold_manifest(full: Path, held_out: list[str], out: Path, quick: bool) -> tuple[Path, int]:
    """`full` minus the held-out images' mask tiles, written to `out`; returns (path, tiles removed).

    The manifest's test split is folded into train: here the held-out fold is the test set, and
    the extra tiles are mostly stroma-labelled WSSS4LUAD ones the model needs.
    """
    import pandas as pd

    from ldcsf.data.manifest import write_manifest

    frame = pd.read_csv(full)
    held = frame["dataset"].eq(MASK_DATASET) & frame["group"].isin([GROUP_PREFIX + i for i in held_out])
    kept = frame[~held].assign(split=lambda f: f["split"].replace({"test": "train"}))
    if quick:  # a few images per source and split: the smoke run trains in seconds
        kept = kept.groupby(["dataset", "split"], sort=False).head(6)
    if not out.is_file():
        write_manifest(kept.reset_index(drop=True), out)
    return out, int(held.sum())


def train_fold(fold: int, held_out: list[str], full_manifest: Path, args) -> tuple[Path, int]:
    """The fold's model file, trained unless already there (an interrupted run resumes)."""
    from ldcsf.training.train import TrainConfig, train

    fold_dir = cv_dir(args) / f"fold{fold}"
    manifest, removed = fold_manifest(full_manifest, held_out, fold_dir / "manifest.csv", args.quick)
    model_file = fold_dir / "run" / "model.pt"
    if model_file.is_file():
        return model_file, removed
    last = fold_dir / "run" / "checkpoints" / "last.ckpt"
    common = dict(data=str(manifest), out=str(fold_dir / "run"), max_steps=args.max_steps, num_workers=0,
                  seed=args.seed, resume=last.is_file(), accelerator="cpu", devices=1, progress=not args.quick,
                  limit_val_batches=2 if args.quick else None)
    if args.recipe:
        recipe = {**RECIPES[args.recipe], **({"epochs": 1} if args.quick else {})}
        config = TrainConfig(**common, patience=0, feature_cache=str(feature_cache_dir(RESULTS)), **recipe)
    else:
        config = TrainConfig(**common, model=args.model, epochs=args.epochs)
    return train(config).model_file, removed


def cv_dir(args) -> Path:
    """One folder per cross-validation setting: a rerun with other settings never reuses its folds."""
    steps = f"-steps{args.max_steps}" if args.max_steps > 0 else ""
    quick = "-quick" if args.quick else ""
    if args.recipe:
        return args.work / f"cv_recipe-{args.recipe}_k{args.folds}_s{args.seed}{steps}{quick}"
    return args.work / f"cv_{args.model}_k{args.folds}_s{args.seed}_e{args.epochs}{steps}{quick}"


def tile_agreement(checkpoint, full_manifest: Path, held_out: list[str]) -> list[dict]:
    """Per held-out mask tile: stroma / (stroma + tumour) of its mask crop vs of the model's prediction.

    The prediction is the tile's mean estimated area with an area head, else its probabilities.
    """
    import pandas as pd
    import torch

    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import build_transforms

    frame = pd.read_csv(full_manifest)
    tiles = frame[frame["dataset"].eq(MASK_DATASET) & frame["group"].isin([GROUP_PREFIX + i for i in held_out])]
    if tiles.empty:
        return []
    meta, model = checkpoint.meta, checkpoint.model
    transform = build_transforms(meta.input_size, meta.mean, meta.std, train=False)
    s, t = meta.labels.index("stroma"), meta.labels.index("tumor")
    rows = []
    for start in range(0, len(tiles), 64):
        part = tiles.iloc[start:start + 64]
        batch = torch.stack([transform(load_rgb(p)) for p in part["path"]])
        with torch.inference_mode():
            if model.has_area_head:
                probs = torch.sigmoid(model.forward_with_areas(batch)[1]).mean((-2, -1)).numpy()
            else:
                probs = torch.sigmoid(model(batch)).numpy()
        for (_, tile), p in zip(part.iterrows(), probs):
            both = tile["frac_stroma"] + tile["frac_tumor"]
            rows.append({"tile": Path(tile["path"]).name, "image": tile["group"].removeprefix(GROUP_PREFIX),
                         "true": float(tile["frac_stroma"] / both) if both > 0 else None,
                         "pred": float(p[s] / (p[s] + p[t])) if p[s] + p[t] > 0 else None})
    return rows


def run_fold(fold: int, held_out: list[tuple[Path, Path]], full_manifest: Path, args) -> dict:
    """Train the fold's model, score its held-out images and tiles; saved in fold<k>/predictions_*.json."""
    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.utils.atomic import write_json_atomic

    done = cv_dir(args) / f"fold{fold}" / f"predictions_{prediction_tag(args)}.json"
    if done.is_file():
        return json.loads(done.read_text())
    ids = [image.stem for image, _ in held_out]
    model_file, removed = train_fold(fold, ids, full_manifest, args)
    loaded = load_checkpoint(model_file)
    slides = cv_dir(args) / f"fold{fold}" / f"slides_{prediction_tag(args)}"
    rows = score_images(held_out, loaded, slides, args, fold=fold)
    result = {"fold": fold, "images": ids, "checkpoint": str(model_file), "mask_tiles_removed": removed,
              "rows": rows, "tiles": tile_agreement(loaded, full_manifest, ids)}
    write_json_atomic(done, result)
    return result


def prediction_tag(args) -> str:
    """What the slide predictions depend on beyond the model."""
    return f"mpp{args.mpp:g}-ov{args.overlap:g}-{args.weighting or 'default'}"


def score_images(pairs: list[tuple[Path, Path]], loaded, runs: Path, args, fold: int | None = None) -> list[dict]:
    from tqdm.auto import tqdm

    rows = []
    for image, mask in tqdm(pairs, desc="images" if fold is None else f"fold {fold} images", disable=args.quick):
        slide = as_slide(image, args.work / f"slides_mpp{args.mpp:g}", args.mpp)
        pred, tiles, note = predict_fraction(slide, loaded, runs / image.stem, args)
        rows.append({"image": image.name, "fold": fold, "true": true_stroma_fraction(mask), "pred": pred,
                     "tiles": tiles, "note": note})
    return rows


def training_leak(manifest: str | None) -> str:
    """Whether the checkpoint's training manifest (recorded in the checkpoint) holds WSSS4LUAD images."""
    import pandas as pd

    if not manifest or not Path(manifest).is_file():
        return f"unknown (training manifest {manifest} not found)"
    frame = pd.read_csv(manifest)
    column = frame["dataset"] if "dataset" in frame else frame["path"]
    hits = int(column.astype(str).str.contains("wsss4luad", case=False).sum())
    return (f"YES: {manifest} holds {hits} WSSS4LUAD images, so the agreement below is optimistic"
            if hits else f"no: {manifest} holds no WSSS4LUAD image")


# -- statistics and report -----------------------------------------------------------------------
def paired(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) of the rows that have both."""
    scored = [r for r in rows if r["true"] is not None and r["pred"] is not None]
    return (np.array([r["true"] for r in scored], dtype=float), np.array([r["pred"] for r in scored], dtype=float))


def agreement(truth: np.ndarray, pred: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    diff = pred - truth
    rho = spearmanr(truth, pred).statistic if len(truth) > 2 else float("nan")
    return {
        "n": int(len(truth)),
        "mae": float(np.mean(np.abs(diff))),
        "bias": float(np.mean(diff)),
        "loa_low": float(np.mean(diff) - 1.96 * np.std(diff, ddof=1)) if len(diff) > 1 else float("nan"),
        "loa_high": float(np.mean(diff) + 1.96 * np.std(diff, ddof=1)) if len(diff) > 1 else float("nan"),
        "spearman": float(rho),
        "category_agreement": float(np.mean((truth > HIGH_CUTOFF) == (pred > HIGH_CUTOFF))),
        "truly_high": int((truth > HIGH_CUTOFF).sum()),
    }


def bland_altman_png(path: Path, truth: np.ndarray, pred: np.ndarray, stats: dict, title: str,
                     folds: np.ndarray | None = None) -> None:
    """Scatter (prediction vs mask) and Bland–Altman plot side by side; points coloured by fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ldcsf.utils.atomic import atomic_path

    mean, diff = (truth + pred) / 2, pred - truth
    groups = [(None, np.ones(len(truth), bool))] if folds is None else [(k, folds == k) for k in np.unique(folds)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for k, sel in groups:
        label = None if k is None else f"fold {k}"
        ax1.scatter(truth[sel], pred[sel], s=22, alpha=0.8, label=label)
        ax2.scatter(mean[sel], diff[sel], s=22, alpha=0.8)
    if folds is not None:
        ax1.legend(fontsize=8, loc="upper left")
    ax1.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax1.axhline(HIGH_CUTOFF, color="grey", lw=0.5)
    ax1.axvline(HIGH_CUTOFF, color="grey", lw=0.5)
    ax1.set(xlim=(0, 1), ylim=(0, 1), xlabel="stroma fraction, pixel mask", ylabel="stroma fraction, predicted",
            title=f"Spearman ρ = {stats['spearman']:.2f}, MAE = {stats['mae']:.3f}")
    for y, style in ((stats["bias"], "-"), (stats["loa_low"], "--"), (stats["loa_high"], "--")):
        ax2.axhline(y, color="C3", ls=style, lw=1)
    ax2.set(xlim=(0, 1), xlabel="mean of mask and prediction", ylabel="predicted − mask",
            title=f"Bland–Altman: bias {stats['bias']:+.3f}, 95% limits [{stats['loa_low']:+.2f}, {stats['loa_high']:+.2f}]")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def stats_table(stats: dict) -> str:
    return markdown_table(
        ["images", "MAE", "bias", "95% limits of agreement", "Spearman ρ", "stroma-high/low agreement"],
        [[stats["n"], fmt(stats["mae"], 3), fmt(stats["bias"], 3),
          f"[{fmt(stats.get('loa_low'), 2)}, {fmt(stats.get('loa_high'), 2)}]", fmt(stats["spearman"], 2),
          f"{100 * stats['category_agreement']:.0f}% ({stats['truly_high']} truly stroma-high)"]])


# -- the two modes ---------------------------------------------------------------------------------
def cross_validated(pairs: list[tuple[Path, Path]], args) -> dict:
    """Every image scored by the fold model that was trained without it."""
    from tqdm.auto import tqdm

    folds = assign_folds([image.stem for image, _ in pairs], args.folds, args.seed)
    full = pancancer_manifest(args)
    results = []
    for fold in tqdm(range(args.folds), desc="folds", disable=args.quick):
        held_out = [pair for pair in pairs if folds[pair[0].stem] == fold]
        results.append(run_fold(fold, held_out, full, args))
    rows = sorted((r for res in results for r in res["rows"]), key=lambda r: r["image"])
    tiles = [t for res in results for t in res["tiles"]]
    removed = ", ".join(str(res["mask_tiles_removed"]) for res in results)
    leak = (f"no: {args.folds}-fold cross-validation by image; each fold's model was trained on the pan-cancer "
            f"set without that fold's WSSS4LUAD mask tiles ({removed} tiles removed per fold)")
    return {"rows": rows, "tiles": tiles, "leak": leak, "model": args.model, "folds": results,
            "checkpoint": ", ".join(res["checkpoint"] for res in results)}


def weighting_comparison(rows: list[dict], args) -> dict[str, dict]:
    """The same slide predictions under every weighting their tile tables allow: {weighting: agreement}.

    Only the TSR arithmetic differs (no new prediction), so this isolates what the weighting does.
    """
    import pandas as pd

    from ldcsf.analysis.tile_table import WEIGHTINGS
    from ldcsf.analysis.tsr import compute_tsr

    per: dict[str, list[tuple[float, float]]] = {w: [] for w in WEIGHTINGS}
    for row in rows:
        if row["true"] is None or row["pred"] is None:
            continue
        folder = (cv_dir(args) / f"fold{row['fold']}" / f"slides_{prediction_tag(args)}" if row["fold"] is not None
                  else None)
        table = folder / Path(row["image"]).stem / "tiles.parquet" if folder is not None else None
        if table is None or not table.is_file():
            return {}
        tiles = pd.read_parquet(table)
        for weighting in WEIGHTINGS:
            try:
                fraction = compute_tsr(tiles, weighting=weighting).stroma_fraction
            except ValueError:  # e.g. estimated_area without an area head
                continue
            if fraction is not None:
                per[weighting].append((row["true"], fraction))
    return {w: agreement(np.array([t for t, _ in v]), np.array([p for _, p in v])) for w, v in per.items() if len(v) > 2}


def single_checkpoint(pairs: list[tuple[Path, Path]], args) -> dict:
    from ldcsf.checkpoint import load_checkpoint

    if not args.checkpoint.is_file():
        raise SystemExit(f"tsr_agreement.py: error: {args.checkpoint}: checkpoint not found")
    loaded = load_checkpoint(args.checkpoint)
    training = (loaded.meta.extra or {}).get("training", {})
    leak = "unknown (the checkpoint does not record its training data)"
    if training:
        leak = training_leak(training.get("config", {}).get("data"))
    tag = f"{args.checkpoint.parent.name}-{loaded.meta.model_name}-{prediction_tag(args)}"
    rows = score_images(pairs, loaded, args.work / "runs" / tag, args)
    return {"rows": rows, "tiles": [], "leak": leak, "model": loaded.meta.model_name,
            "checkpoint": str(args.checkpoint)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    pairs = image_mask_pairs(args.data / "wsss4luad" / "validation")[: args.limit]
    run = single_checkpoint(pairs, args) if args.checkpoint else cross_validated(pairs, args)
    rows, tiles = run["rows"], run["tiles"]
    scored = [r for r in rows if r["true"] is not None and r["pred"] is not None]
    truth, pred = paired(rows)
    stats = agreement(truth, pred) if len(scored) else {"n": 0}
    tile_truth, tile_pred = paired(tiles)
    tile_stats = agreement(tile_truth, tile_pred) if len(tile_truth) else None
    by_weighting = weighting_comparison(rows, args) if not args.checkpoint else {}

    machine = machine_info("cpu")
    png = args.out.with_suffix(".png")
    how = f"{args.folds}-fold cross-validated" if not args.checkpoint else "one checkpoint"
    title = f"{run['model']}, {how}, WSSS4LUAD validation, {args.mpp:g} µm/px, {args.weighting or 'slide-default'} weighting"
    if len(scored) > 1:
        folds = None if args.checkpoint else np.array([r["fold"] for r in scored])
        bland_altman_png(png, truth, pred, stats, title, folds)
    md = [f"# TSR agreement with pixel masks (WSSS4LUAD validation)\n",
          provenance(machine, command_line(), now()),
          f"- model: {run['model']}; checkpoint(s): `{run['checkpoint']}`",
          f"- training data includes the scored images: {run['leak']}",
          f"- images scored: {stats['n']} of {len(rows)} with masks; {args.mpp:g} µm/px assumed, overlap {args.overlap:g}, "
          f"{args.weighting or 'slide-default (area with an area head, else probability)'} weighting\n"]
    if stats["n"]:
        md += [stats_table(stats), f"\n![Bland–Altman]({png.name})\n"]
    if tile_stats:
        md += ["## Mask tiles (112 px) of the held-out images\n",
               "Stroma / (stroma + tumour) of each tile's mask crop vs the same ratio of the model's mean estimated "
               "areas (with an area head) or of p(stroma) and p(tumour) (without).\n",
               stats_table(tile_stats).replace("| images |", "| tiles |"), ""]
    if by_weighting:
        md += ["## The same predictions under each TSR weighting\n",
               markdown_table(["weighting", "images", "MAE", "bias", "Spearman ρ", "stroma-high/low agreement"],
                              [[w, st["n"], fmt(st["mae"], 3), fmt(st["bias"], 3), fmt(st["spearman"], 2),
                                f"{100 * st['category_agreement']:.0f}%"] for w, st in by_weighting.items()]), ""]
    md += ["## Per image\n", markdown_table(["image", "fold", "stroma fraction (mask)", "predicted", "tiles", "note"],
                                            [[r["image"], "—" if r["fold"] is None else r["fold"], fmt(r["true"], 3),
                                              fmt(r["pred"], 3), r["tiles"], r["note"]] for r in rows])]
    result = {"command": command_line(), "date": now(), "machine": machine.to_dict(), "checkpoint": run["checkpoint"],
              "model": run["model"], "leakage": run["leak"], "folds": None if args.checkpoint else args.folds,
              "epochs": None if args.checkpoint else args.epochs, "mpp": args.mpp, "overlap": args.overlap,
              "weighting": args.weighting, "stats": stats, "tile_stats": tile_stats, "by_weighting": by_weighting, "images": rows}
    md_path, js_path = write_results(args.out, "\n".join(md), result)
    print("\n".join(md))
    print(f"wrote {md_path}, {js_path}" + (f", {png}" if len(scored) > 1 else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
