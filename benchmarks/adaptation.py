"""Adapting to a lab's tissue: QuPath annotations of N images in, TSR error on other patients out.

For each masked source beside the project (GlaS colon, WSSS4LUAD lung) the starting model is the
recommended recipe (benchmarks/_recipe.py `lite0_area`) trained on the pan-cancer set *without*
that source: GlaS is never in it, and the WSSS4LUAD mask tiles are dropped, so one base model
serves both. The source's images are split by patient into an annotation pool and a held-out
set. For each N and draw, N pool images have their masks turned into QuPath-form GeoJSON
(`ldcsf.data.qupath.features_from_mask`), and the two commands of docs/adapt.md run as library
calls: `tile_annotated_slide` (ldcsf data qupath) and `train` with `init_from` and `mix_with`
(ldcsf train --init-from). Both models then score the held-out images: the stroma fraction,
stroma / (stroma + tumour), of the area head's estimates summed over each image's tiles
(tiles at the model's µm/px, the slide pipeline's `estimated_area` weighting), against the
mask's. `seconds` is the wall time of the two steps, `cpu_seconds` their process CPU time.

Masks as annotations:
- GlaS (0.62 µm/px; 255 = gland with its lumen): in a malignant image gland = Tumor, in a benign
  one Normal (non-tumour); the rest Stroma; pixels of low saturation (glass, lumen, mucus:
  HSV saturation < 0.08 and value > 0.75) Background. The truth uses the same classes.
- WSSS4LUAD validation (1.0 µm/px as in tsr_agreement.py; 0 tumour, 1 stroma, 2 normal,
  3 background): Tumor, Stroma, Normal, Background. Each image is its own patient.

    .venv/bin/python benchmarks/adaptation.py --threads 2
    .venv/bin/python benchmarks/adaptation.py --sizes 5 --draws 1 --sources glas   # one cell
    .venv/bin/python benchmarks/adaptation.py --base runs/recommended/model.pt \
        --base-manifest runs/pancancer-data/manifest.csv                          # your own model
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from _common import REPO, RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from _recipe import RECIPES, cap_source
from ldcsf.benchmarking import machine_info

SOURCES = ("glas", "wsss4luad")
GLAS_MPP, WSSS_MPP = 0.62005, 1.0
LOW_SATURATION, BRIGHT = 0.08, 0.75
#: Classes of the converted masks (QuPath names, resolved by the shipped mapping table).
TUMOR, STROMA, NORMAL, BACKGROUND = 0, 1, 2, 3
QUPATH_NAMES = {TUMOR: "Tumor", STROMA: "Stroma", NORMAL: "Normal", BACKGROUND: "Background"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    p.add_argument("--sizes", nargs="+", type=int, default=[2, 5, 10], help="annotated images N")
    p.add_argument("--draws", type=int, default=2, help="random draws of the N images")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the heads' fine-tuning")
    p.add_argument("--mix-ratio", type=float, default=1.0)
    p.add_argument("--max-held-out", type=int, default=40, help="held-out images scored per source")
    p.add_argument("--base", type=Path, help="starting checkpoint (default: trained under --work, recipe lite0_area "
                                             "without the WSSS4LUAD mask tiles)")
    p.add_argument("--base-manifest", type=Path, help="with --base: its training manifest, mixed into fine-tuning")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "adaptation")
    p.add_argument("--out", type=Path, default=RESULTS / "adaptation", help="results stem (.md, .json)")
    return p.parse_args(argv)


# -- the sources as (image, class mask, patient) ---------------------------------------------------
def glas_items(data: Path) -> list[dict]:
    import pandas as pd

    table = pd.read_csv(data / "glas" / "manifest.csv")
    return [{"image": data / "glas" / row.image, "mask": data / "glas" / row.mask, "patient": f"glas-{row.patient_id}",
             "malignant": row.glas_grade == "malignant", "mpp": GLAS_MPP} for row in table.itertuples()]


def wsss_items(data: Path) -> list[dict]:
    from tsr_agreement import image_mask_pairs

    return [{"image": image, "mask": mask, "patient": f"wsss-{image.stem}", "mpp": WSSS_MPP}
            for image, mask in image_mask_pairs(data / "wsss4luad" / "validation")]


def class_mask(item: dict) -> np.ndarray:
    """The item's mask in TUMOR/STROMA/NORMAL/BACKGROUND values."""
    from skimage.color import rgb2hsv

    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.masks import read_mask

    mask = read_mask(item["mask"])
    if "malignant" not in item:  # WSSS4LUAD: already tumour 0, stroma 1, normal 2, background 3
        return mask
    hsv = rgb2hsv(np.asarray(load_rgb(item["image"])))
    gland = TUMOR if item["malignant"] else NORMAL
    out = np.where(mask > 0, gland, STROMA).astype(np.uint8)
    out[(hsv[..., 1] < LOW_SATURATION) & (hsv[..., 2] > BRIGHT)] = BACKGROUND
    return out


def true_stroma_fraction(mask: np.ndarray) -> float | None:
    stroma, tumor = int((mask == STROMA).sum()), int((mask == TUMOR).sum())
    return stroma / (stroma + tumor) if stroma + tumor else None


def split_patients(items: list[dict], max_held_out: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(annotation pool, held-out images): half the patients each, seeded; held-out capped."""
    patients = sorted({it["patient"] for it in items})
    order = np.random.default_rng(seed).permutation(len(patients))
    held = {patients[i] for i in order[: len(patients) // 2]}
    pool = [it for it in items if it["patient"] not in held]
    test = [it for it in items if it["patient"] in held]
    if len(test) > max_held_out:
        keep = np.random.default_rng(seed).choice(len(test), max_held_out, replace=False)
        test = [test[i] for i in sorted(keep)]
    return pool, test


# -- the base model ------------------------------------------------------------------------------
def base_model(args) -> tuple[Path, Path, Path]:
    """(checkpoint, its training manifest, feature cache): the recommended recipe without WSSS4LUAD masks."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest
    from ldcsf.data.pancancer import build_pancancer
    from ldcsf.options import TrainConfig
    from ldcsf.training.train import train

    if args.base is not None:
        return args.base, args.base_manifest, args.work / "feature_cache"
    folder = args.work / "base"
    manifest, model, cache = args.work / "base_manifest.csv", folder / "model.pt", folder / "feature_cache"
    if model.is_file():
        return model, manifest, cache
    built = build_pancancer(args.data, args.work / "pancancer", seed=0)
    frame = pd.read_csv(built)
    for column in ("path", "mask"):
        frame[column] = [str((built.parent / p).resolve()) if isinstance(p, str) else p for p in frame[column]]
    frame = cap_source(frame)
    write_manifest(frame[frame["dataset"] != "wsss4luad_masks"].reset_index(drop=True), manifest)
    train(TrainConfig(data=str(manifest), out=str(folder), **RECIPES["lite0_area"], patience=0, num_workers=0,
                      progress=False, accelerator="cpu", devices=1))
    return model, manifest, cache


# -- adaptation and scoring ----------------------------------------------------------------------
def adapt(source: str, chosen: list[dict], base: tuple[Path, Path, Path], run: Path, args) -> tuple[Path, dict]:
    """QuPath GeoJSON of the chosen images -> tiles -> fine-tuned model; returns it and its timing."""
    import pandas as pd

    from ldcsf.checkpoint import read_checkpoint_payload
    from ldcsf.data.manifest import write_manifest
    from ldcsf.data.qupath import features_from_mask, split_by_slide, tile_annotated_slide, write_geojson
    from ldcsf.options import TrainConfig
    from ldcsf.training.train import train

    model, base_manifest, cache = base
    annotations = run / "annotations"
    for item in chosen:  # what a pathologist's export would hold: made before the clock starts
        write_geojson(features_from_mask(class_mask(item), QUPATH_NAMES), annotations / f"{item['image'].stem}.geojson")
    wall, cpu = time.perf_counter(), time.process_time()
    meta = read_checkpoint_payload(model)[0]
    frames = [tile_annotated_slide(it["image"], annotations / f"{it['image'].stem}.geojson", run / "data",
                                   tile_px=meta.input_size, mpp=meta.mpp, slide_mpp=it["mpp"], labels=meta.labels)
              for it in chosen]
    frame = split_by_slide(pd.concat(frames, ignore_index=True))  # ldcsf data qupath's default split
    write_manifest(frame, run / "data" / "manifest.csv")
    result = train(TrainConfig(data=str(run / "data" / "manifest.csv"), model="", out=str(run / "model"),
                               init_from=str(model), mix_with=str(base_manifest) if base_manifest else None,
                               mix_ratio=args.mix_ratio,
                               feature_cache=str(cache), epochs=args.epochs, lr=1e-3, patience=0, num_workers=0,
                               progress=False, accelerator="cpu", devices=1))
    timing = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu, "tiles": len(frame)}
    return result.model_file, timing


def held_out_tiles(items: list[dict], model: Path) -> tuple[list, list[float | None]]:
    """Every held-out image as a batch of model-input tiles (the grid at the model's µm/px), and its truth."""
    import torch

    from ldcsf.checkpoint import read_checkpoint_payload
    from ldcsf.data.masks import tile_positions
    from ldcsf.wsi.readers import open_slide
    from ldcsf.wsi.slide_reader import level0_pixels

    meta = read_checkpoint_payload(model)[0]
    mean, std = torch.tensor(meta.mean)[:, None, None], torch.tensor(meta.std)[:, None, None]
    batches, truths = [], []
    for item in items:
        with open_slide(item["image"], mpp=item["mpp"]) as reader:
            extent = level0_pixels(meta.input_size, meta.mpp, item["mpp"])
            width, height = reader.dimensions
            tiles = [reader.read_at_mpp((x, y), meta.input_size, meta.mpp, meta.interpolation)
                     for y in tile_positions(height, extent, extent) for x in tile_positions(width, extent, extent)]
        pixels = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255
        batches.append((pixels - mean) / std)
        truths.append(true_stroma_fraction(class_mask(item)))
    return batches, truths


def predicted_fractions(model: Path, batches: list) -> list[float | None]:
    """stroma / (stroma + tumour) of the area head's estimates summed over each image's tiles."""
    import torch

    from ldcsf.checkpoint import load_checkpoint

    loaded = load_checkpoint(model)
    s, t = loaded.meta.labels.index("stroma"), loaded.meta.labels.index("tumor")
    out = []
    with torch.inference_mode():
        for batch in batches:
            areas = loaded.model.forward_with_areas(batch)[1].sigmoid().mean(dim=(2, 3))
            stroma, tumor = float(areas[:, s].sum()), float(areas[:, t].sum())
            out.append(stroma / (stroma + tumor) if stroma + tumor > 0 else None)
    return out


def score(truth: list, pred: list) -> tuple[float, float]:
    from scipy.stats import spearmanr

    pairs = np.array([(a, b) for a, b in zip(truth, pred) if a is not None and b is not None], dtype=float)
    return float(np.mean(np.abs(pairs[:, 1] - pairs[:, 0]))), float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)


# -- main ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    base = base_model(args)
    entries = []
    for source in args.sources:
        items = glas_items(args.data) if source == "glas" else wsss_items(args.data)
        pool, test = split_patients(items, args.max_held_out)
        batches, truth = held_out_tiles(test, base[0])
        before_mae, before_rho = score(truth, predicted_fractions(base[0], batches))
        print(f"{source}: {len(pool)} pool / {len(test)} held-out images; before MAE {before_mae:.3f}", flush=True)
        for n in args.sizes:
            for draw in range(args.draws):
                rng = np.random.default_rng(1000 * n + draw)
                chosen = [pool[i] for i in sorted(rng.choice(len(pool), n, replace=False))]
                run = args.work / source / f"n{n}_draw{draw}"
                model, timing = adapt(source, chosen, base, run, args)
                after_mae, after_rho = score(truth, predicted_fractions(model, batches))
                entries.append({"source": source, "annotated_images": n, "draw": draw,
                                "annotated_patients": len({c["patient"] for c in chosen}),
                                "held_out_images": len(test), "held_out_patients": len({t["patient"] for t in test}),
                                "before_mae": before_mae, "after_mae": after_mae, "before_spearman": before_rho,
                                "after_spearman": after_rho, **timing, "load_average": os.getloadavg()[0]})
                print(f"  N={n} draw {draw}: MAE {before_mae:.3f} -> {after_mae:.3f}, Spearman {before_rho:.2f} -> "
                      f"{after_rho:.2f}, {timing['seconds']:.0f} s ({timing['tiles']} tiles)", flush=True)
    write(args, entries, load_before)
    return 0


def summary(entries: list[dict]) -> list[dict]:
    """Mean over draws per source and N."""
    rows = []
    for source in dict.fromkeys(e["source"] for e in entries):
        for n in dict.fromkeys(e["annotated_images"] for e in entries if e["source"] == source):
            part = [e for e in entries if e["source"] == source and e["annotated_images"] == n]
            mean = {k: float(np.mean([e[k] for e in part])) for k in
                    ("before_mae", "after_mae", "before_spearman", "after_spearman", "seconds", "cpu_seconds")}
            rows.append({"source": source, "annotated_images": n, "draws": len(part), **mean,
                         "mae_drop": 1 - mean["after_mae"] / mean["before_mae"]})
    return rows


def write(args, entries: list[dict], load_before: tuple) -> None:
    machine = machine_info()
    rows = summary(entries)
    table = markdown_table(
        ["source", "N", "draws", "MAE before", "MAE after", "MAE drop", "Spearman before", "Spearman after",
         "seconds (wall)", "CPU s"],
        [[r["source"], r["annotated_images"], r["draws"], fmt(r["before_mae"], 3), fmt(r["after_mae"], 3),
          f"{100 * r['mae_drop']:.0f} %", fmt(r["before_spearman"], 2), fmt(r["after_spearman"], 2),
          fmt(r["seconds"], 0), fmt(r["cpu_seconds"], 0)] for r in rows])
    load_after = os.getloadavg()
    markdown = (f"# Adapting to a source with N annotated images\n\n{provenance(machine, command_line(), now())}"
                f"- load average (1/5/15 min): before {', '.join(f'{v:.2f}' for v in load_before)}; "
                f"after {', '.join(f'{v:.2f}' for v in load_after)}\n"
                f"- starting model: recipe lite0_area on the pan-cancer set without WSSS4LUAD mask tiles; "
                f"{args.epochs} epochs of the heads, mix ratio {args.mix_ratio:g}\n\n{table}\n\n"
                "Means over draws; every draw is in the JSON. Held-out: images of other patients than the "
                "annotated ones (see the script's docstring).\n")
    write_results(args.out, markdown, {"command": command_line(), "date": now(), "machine": machine.summary(),
                                       "load_average_before": list(load_before), "load_average_after": list(load_after),
                                       "epochs": args.epochs, "mix_ratio": args.mix_ratio,
                                       "entries": entries, "summary": rows})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
