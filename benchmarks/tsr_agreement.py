"""Does the predicted stroma fraction agree with pixel-level ground truth?

Each WSSS4LUAD validation image that has a pixel mask (0 tumour, 1 stroma, 2 normal, 3 background)
is written as a small pyramidal TIFF and run through the slide pipeline like any slide; its
predicted stroma fraction, stroma / (stroma + tumour) area, is compared with the mask's:
mean absolute error, Spearman correlation, agreement on stroma-high (> 50 %) vs stroma-low, and a
Bland–Altman plot.

Leakage: the pan-cancer training set cuts tiles from these very images. A checkpoint trained on it
has seen them, and its agreement is optimistic. `--train-without-wsss4luad` trains a checkpoint on
the pan-cancer set minus every WSSS4LUAD image and evaluates that one.

    .venv/bin/python benchmarks/tsr_agreement.py --checkpoint runs/x/model.pt
    .venv/bin/python benchmarks/tsr_agreement.py --train-without-wsss4luad --epochs 15
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from ldcsf.benchmarking import machine_info

STROMA, TUMOUR = 1, 0  # WSSS4LUAD palette indices
HIGH_CUTOFF = 0.5
#: WSSS4LUAD crops carry no resolution. At 1.0 µm/px a mini-model tile (128 px at 0.875 µm/px)
#: spans 112 image pixels: the tile size the pan-cancer builder cuts from the same images.
DEFAULT_MPP = 1.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a trained model (.pt / .ckpt)")
    src.add_argument("--train-without-wsss4luad", action="store_true",
                     help="train a checkpoint on the pan-cancer set without any WSSS4LUAD image, then evaluate it")
    p.add_argument("--model", default="ldcsf_swin_mini", help="variant to train (with --train-without-wsss4luad)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs (with --train-without-wsss4luad)")
    p.add_argument("--max-steps", type=int, default=-1, help="cap on training steps (with --train-without-wsss4luad)")
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared real H&E images")
    p.add_argument("--mpp", type=float, default=DEFAULT_MPP, help="µm/px of the WSSS4LUAD images")
    p.add_argument("--overlap", type=float, default=0.5, help="tile overlap (small images need it for enough tiles)")
    p.add_argument("--weighting", choices=["probability", "decision"], default="probability")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (quick runs)")
    p.add_argument("--work", type=Path, default=RESULTS / "tsr_work", help="slides, runs and per-image outputs")
    p.add_argument("--out", type=Path, default=RESULTS / "tsr_agreement", help="results stem (.md, .json, .png)")
    p.add_argument("--quick", action="store_true", help="3 images, a few training steps: a smoke run for tests")
    args = p.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 3
        args.max_steps = 2 if args.max_steps < 0 else args.max_steps
        args.epochs = 1
        if args.train_without_wsss4luad:
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
    stroma, tumour = int((mask == STROMA).sum()), int((mask == TUMOUR).sum())
    return stroma / (stroma + tumour) if stroma + tumour else None


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
    import json

    from ldcsf.inference.pipeline import NoTissueError, SlideSettings, run_slide

    settings = SlideSettings(mpp=args.mpp, overlap=args.overlap, batch_size=32, num_workers=0, accelerator="cpu",
                             devices=1, progress=False)
    try:
        run_slide(slide, checkpoint, out_dir, settings)
    except NoTissueError as exc:
        return None, 0, str(exc).split(": ", 1)[-1]
    # tsr.json holds the slide's TSR under the pipeline's default (probability) weighting.
    slide_tsr = json.loads((out_dir / "tsr.json").read_text())["tsr"]
    fraction = slide_tsr["stroma_fraction"]
    if args.weighting != slide_tsr.get("weighting", "probability"):
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


# -- a leak-free checkpoint --------------------------------------------------------------------
def train_without_wsss4luad(args) -> Path:
    """Train on the pan-cancer set minus WSSS4LUAD; reuse the model when the run is complete."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest
    from ldcsf.data.pancancer import build_pancancer
    from ldcsf.training.train import TrainConfig, train

    run = args.work / f"train_{args.model}_no_wsss4luad"
    model_file = run / "run" / "model.pt"
    if model_file.is_file():
        return model_file
    manifest = run / "data" / "manifest.csv"
    if not manifest.is_file():
        full = build_pancancer(args.data, run / "data_full", progress=False)
        frame = pd.read_csv(full)
        kept = frame[~frame["dataset"].astype(str).str.startswith("wsss4luad")]
        # Paths in the manifest are relative to its folder: rewrite them as absolute ones.
        kept = kept.assign(path=[str((full.parent / p).resolve()) for p in kept["path"]])
        write_manifest(kept, manifest)
    last = run / "run" / "checkpoints" / "last.ckpt"
    config = TrainConfig(data=str(manifest), model=args.model, out=str(run / "run"), epochs=args.epochs,
                         max_steps=args.max_steps, num_workers=0, seed=0, resume=last.is_file(),
                         accelerator="auto", devices=1, progress=not args.quick)
    return train(config).model_file


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


def bland_altman_png(path: Path, truth: np.ndarray, pred: np.ndarray, stats: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ldcsf.utils.atomic import atomic_path

    mean, diff = (truth + pred) / 2, pred - truth
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax1.scatter(truth, pred, s=22, alpha=0.8)
    ax1.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax1.axhline(HIGH_CUTOFF, color="grey", lw=0.5)
    ax1.axvline(HIGH_CUTOFF, color="grey", lw=0.5)
    ax1.set(xlim=(0, 1), ylim=(0, 1), xlabel="stroma fraction, pixel mask", ylabel="stroma fraction, predicted",
            title=f"Spearman ρ = {stats['spearman']:.2f}, MAE = {stats['mae']:.3f}")
    ax2.scatter(mean, diff, s=22, alpha=0.8)
    for y, style in ((stats["bias"], "-"), (stats["loa_low"], "--"), (stats["loa_high"], "--")):
        ax2.axhline(y, color="C3", ls=style, lw=1)
    ax2.set(xlim=(0, 1), xlabel="mean of mask and prediction", ylabel="predicted − mask",
            title=f"Bland–Altman: bias {stats['bias']:+.3f}, 95% limits [{stats['loa_low']:+.2f}, {stats['loa_high']:+.2f}]")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm.auto import tqdm

    from ldcsf.checkpoint import load_checkpoint

    validation = args.data / "wsss4luad" / "validation"
    pairs = image_mask_pairs(validation)[: args.limit]
    checkpoint = train_without_wsss4luad(args) if args.train_without_wsss4luad else args.checkpoint
    if not Path(checkpoint).is_file():
        raise SystemExit(f"tsr_agreement.py: error: {checkpoint}: checkpoint not found")
    loaded = load_checkpoint(checkpoint)
    training = (loaded.meta.extra or {}).get("training", {})
    leak = "unknown (the checkpoint does not record its training data)"
    if args.train_without_wsss4luad:
        leak = "no: trained on the pan-cancer set without any WSSS4LUAD image"
    elif training:
        leak = training_leak(training.get("config", {}).get("data"))

    tag = f"{Path(checkpoint).parent.name}-{loaded.meta.model_name}-mpp{args.mpp:g}-ov{args.overlap:g}"
    rows = []
    for image, mask in tqdm(pairs, desc="images", disable=args.quick):
        slide = as_slide(image, args.work / f"slides_mpp{args.mpp:g}", args.mpp)
        pred, tiles, note = predict_fraction(slide, loaded, args.work / "runs" / tag / image.stem, args)
        rows.append({"image": image.name, "true": true_stroma_fraction(mask), "pred": pred,
                     "tiles": tiles, "note": note})
    scored = [r for r in rows if r["true"] is not None and r["pred"] is not None]
    truth = np.array([r["true"] for r in scored], dtype=float)
    pred = np.array([r["pred"] for r in scored], dtype=float)
    stats = agreement(truth, pred) if len(scored) else {"n": 0}

    machine = machine_info("cpu")
    png = args.out.with_suffix(".png")
    title = f"{loaded.meta.model_name}, WSSS4LUAD validation, {args.mpp:g} µm/px, {args.weighting} weighting"
    if len(scored) > 1:
        bland_altman_png(png, truth, pred, stats, title)
    md = [f"# TSR agreement with pixel masks (WSSS4LUAD validation)\n",
          provenance(machine, command_line(), now()),
          f"- checkpoint: `{checkpoint}` ({loaded.meta.model_name})",
          f"- training data includes these images: {leak}",
          f"- images scored: {stats['n']} of {len(rows)} with masks; {args.mpp:g} µm/px assumed, overlap {args.overlap:g}, "
          f"{args.weighting} weighting\n"]
    if stats["n"]:
        md.append(markdown_table(
            ["images", "MAE", "bias", "95% limits of agreement", "Spearman ρ", "stroma-high/low agreement"],
            [[stats["n"], fmt(stats["mae"], 3), fmt(stats["bias"], 3),
              f"[{fmt(stats.get('loa_low'), 2)}, {fmt(stats.get('loa_high'), 2)}]", fmt(stats["spearman"], 2),
              f"{100 * stats['category_agreement']:.0f}% ({stats['truly_high']} truly stroma-high)"]]))
        md.append(f"\n![Bland–Altman]({png.name})\n")
    md += ["## Per image\n", markdown_table(["image", "stroma fraction (mask)", "predicted", "tiles", "note"],
                                            [[r["image"], fmt(r["true"], 3), fmt(r["pred"], 3), r["tiles"], r["note"]]
                                             for r in rows])]
    result = {"command": command_line(), "date": now(), "machine": machine.to_dict(), "checkpoint": str(checkpoint),
              "model": loaded.meta.model_name, "leakage": leak, "mpp": args.mpp, "overlap": args.overlap,
              "weighting": args.weighting, "stats": stats, "images": rows}
    md_path, js_path = write_results(args.out, "\n".join(md), result)
    print("\n".join(md))
    print(f"wrote {md_path}, {js_path}" + (f", {png}" if len(scored) > 1 else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
