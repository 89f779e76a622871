"""Leave-one-source-out: train without a source, score on every image of it.

Sources are the datasets of the pan-cancer manifest built from the shared real H&E images
(`ldcsf data pancancer`): NCT-CRC-HE (colorectal), oral mucosa, osteosarcoma, LC25000 (lung and
colon), WSSS4LUAD mask tiles (lung adenocarcinoma). The two tiny sources (TCGA-CHOL, WSSS4LUAD
image-level examples) always stay in training. For each recipe (benchmarks/_recipe.py) and each
held-out source, a model is trained on the other sources (their train and test splits; their val
split picks the best epoch and tunes thresholds) and scores the held-out source: per-label
accuracy at the tuned thresholds and AUROC, for the labels that source annotates, and the share
of its images called stroma.

Frozen-backbone recipes share one cache of backbone maps (benchmarks/results/feature_cache): the
backbone runs once per image and view for all folds and recipes. Each fold's model and scores
are kept under --work; a rerun skips finished folds.

    .venv/bin/python benchmarks/loso.py --threads 2
    .venv/bin/python benchmarks/loso.py --recipes swin_mini_random --sources nct_crc wsss4luad_masks
    .venv/bin/python benchmarks/loso.py --recipes lite0_area --sources glas   # + TSR per GlaS image
    .venv/bin/python benchmarks/loso.py --recipes lite0_area --sources wsss4luad_masks --train-with glas
(Sources with pixel masks, GlaS and the WSSS4LUAD mask tiles, are also scored by TSR per image.)

A recipe with a wider field or another input size (`_recipe.tiling`, e.g. lite0_area_context224: 224 µm;
lite0_area_mid_views_ens3_exclusive_224px: 224 px over 112 µm, GlaS at 0.5 µm/px) trains and is
scored on the masked sources cut at that field, in manifests and tile folders of their own
(tsr_work/pancancer_224um/, <--work>/extra_224um/): GlaS resampled to 1.75 µm/px, WSSS4LUAD cut
in 224 px tiles. The other sources ship as fixed tiles and stay as they are (NCT-CRC-HE and oral
are 112 µm), so such a recipe's scores on them are not comparable with a 112 µm recipe's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, fmt, markdown_table, now, provenance, write_results
from _recipe import DEFAULT_TILING, FIELD_UM, RECIPES, Tiling, cap_source, feature_cache_dir, tiling
from ldcsf.benchmarking import machine_info

HELD_OUT = ("nct_crc", "oral", "osteosarcoma", "lc25000", "wsss4luad_masks")
#: Sources outside the default pan-cancer set, only ever held out (so no other fold changes):
#: their rows are built apart (`extra_rows`), and their images with masks get a TSR score.
EXTRA_HELD_OUT = ("glas",)
#: The sources cut from pixel masks: the only ones a wider field can be cut from.
MASKED = ("glas", "wsss4luad_masks")
DEFAULT_RECIPES = ("lite0_presence", "lite0_area", "lite0_area_wo_LDC", "lite0_area_wo_FR", "lite0_area_wo_ResNet")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES), choices=list(RECIPES))
    p.add_argument("--sources", nargs="+", default=list(HELD_OUT), choices=[*HELD_OUT, *EXTRA_HELD_OUT],
                   help="sources held out (glas: colon images with gland masks, scored also by TSR per image)")
    p.add_argument("--train-with", nargs="+", default=[], choices=list(EXTRA_HELD_OUT),
                   help="add these sources to every fold's training (folds go to <--work>_with_<names>)")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--work", type=Path, default=RESULTS / "loso_work")
    p.add_argument("--out", type=Path, default=RESULTS / "loso", help="results stem (.md, .json)")
    p.add_argument("--quick", action="store_true", help="a few images per source and 2 steps: a smoke run for tests")
    args = p.parse_args(argv)
    args.extra_work = args.work  # extra sources' tiles: one place, so their cached maps are shared
    if args.train_with:  # other training data, other fold models: never mixed with the default folds
        args.work = args.work.with_name(f"{args.work.name}_with_{'_'.join(args.train_with)}")
    return args


def field_suffix(cut: Tiling) -> str:
    """Folder suffix of the masked sources' tiles cut as `cut`: none at the default 112 µm and 128 px."""
    return ("" if cut.field_um == FIELD_UM else f"_{cut.field_um}um") + \
        ("" if cut.input_px == DEFAULT_TILING.input_px else f"_{cut.input_px}px")


def mask_field(cut: Tiling) -> dict:
    """`load_source` arguments cutting the masked sources as `cut`: GlaS resampled so that tiles of the
    input's size span the field, WSSS4LUAD's 112 px tiles (the 112 µm field's) widened in proportion.
    WSSS4LUAD is cut from its source pixels whatever the input size (1.0 µm/px, no finer detail)."""
    from ldcsf.data.pancancer import MASK_TILE_SIZE

    return {"glas_mpp": cut.field_um / cut.input_px, "glas_tile_size": cut.input_px,
            "tile_size": round(MASK_TILE_SIZE * cut.field_um / FIELD_UM)}


def pancancer(args, cut: Tiling = DEFAULT_TILING) -> Path:
    """The pan-cancer manifest with absolute paths, oral capped (built once under --work), the mask
    tiles cut as `cut` (another field or size: another folder, so no tile or cached map is overwritten)."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest
    from ldcsf.data.pancancer import build_pancancer

    # The same folder as tsr_agreement.py's: the mask tiles keep one path, so their cached maps are shared.
    folder = args.work / "pancancer" if args.quick else RESULTS / "tsr_work" / "pancancer"
    folder = folder.with_name(folder.name + field_suffix(cut))
    out = folder / ("manifest_quick.csv" if args.quick else "manifest_capped.csv")
    if out.is_file():
        return out
    built = build_pancancer(args.data, folder, seed=0, progress=not args.quick, **mask_field(cut))
    frame = pd.read_csv(built)
    for column in ("path", "mask"):
        frame[column] = [str((built.parent / p).resolve()) if isinstance(p, str) else p for p in frame[column]]
    frame = cap_source(frame)
    if args.quick:
        frame = frame.groupby(["dataset", "split"], sort=False).head(4)
    write_manifest(frame.reset_index(drop=True), out)
    return out


def with_extra_sources(full: Path, args, cut: Tiling = DEFAULT_TILING) -> Path:
    """`full` plus the --train-with sources (cut as `cut`), each split by its own groups (seed 0), beside it."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest
    from ldcsf.data.splits import assign_splits

    if not args.train_with:
        return full
    out = full.with_name(f"{full.stem}_with_{'_'.join(args.train_with)}.csv")
    if out.is_file():
        return out
    parts = [pd.read_csv(full)]
    for source in args.train_with:
        rows = extra_rows(source, args, cut)
        parts.append(assign_splits(rows.drop(columns=["split"], errors="ignore"), group_col="group", seed=0))
    write_manifest(pd.concat(parts, ignore_index=True), out)
    return out


def extra_rows(source: str, args, cut: Tiling = DEFAULT_TILING):
    """The rows of a source outside the default set (tiles cut as `cut`, written once under --work), absolute paths."""
    import pandas as pd

    from ldcsf.data.manifest import default_labels
    from ldcsf.data.pancancer import load_source
    from ldcsf.data.sources import shared_source

    extra = args.extra_work / f"extra{field_suffix(cut)}"
    cached = extra / source / f"rows{'_quick' if args.quick else ''}.csv"
    if cached.is_file():
        return pd.read_csv(cached)
    frame = load_source(shared_source(source), args.data, extra, list(default_labels()), progress=not args.quick,
                        **mask_field(cut))
    if args.quick:  # two images of each grade
        keep = frame.groupby("glas_grade")["source_image"].unique().map(lambda s: list(s[:2])).sum()
        frame = frame[frame["source_image"].isin(keep)]
    cached.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index(drop=True).to_csv(cached, index=False)
    return frame.reset_index(drop=True)


def tile_areas(model_file: Path, frame) -> np.ndarray:
    """(N, labels) mean estimated area of each label per tile (area head), else presence probabilities."""
    from ldcsf.checkpoint import load_checkpoint

    return loaded_tile_areas(load_checkpoint(model_file), frame)


def loaded_tile_areas(loaded, frame) -> np.ndarray:
    """`tile_areas` of an already loaded model (a checkpoint or the shipped model); `frame["path"]` absolute."""
    import torch

    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import eval_transforms

    model, meta = loaded.model, loaded.meta
    transform = eval_transforms(meta)  # as `ldcsf slide` prepares tiles: the model's resampling and stain normalisation
    out = []
    for start in range(0, len(frame), 64):
        batch = torch.stack([transform(load_rgb(p)) for p in frame["path"].iloc[start:start + 64]])
        with torch.inference_mode():
            logits, areas = model.forward_with_areas(batch)
            out.append(torch.sigmoid(areas).mean((-2, -1)).numpy() if areas is not None else torch.sigmoid(logits).numpy())
    return np.concatenate(out)


def image_tsr(frame, areas: np.ndarray, labels: list[str]):
    """Per source image: true stroma / (stroma + tumour) from its mask tiles vs the predicted one.

    Only images with tumour in their mask: a TSR is scored in tumours (benign GlaS images have none).
    """
    import pandas as pd

    s, t = labels.index("stroma"), labels.index("tumor")
    tiles = frame.assign(pred_stroma=areas[:, s], pred_tumor=areas[:, t])
    per = tiles.groupby("source_image")[["frac_stroma", "frac_tumor", "pred_stroma", "pred_tumor"]].sum()
    per = per[per["frac_tumor"] > 0]
    return pd.DataFrame({"true": per["frac_stroma"] / (per["frac_stroma"] + per["frac_tumor"]),
                         "pred": per["pred_stroma"] / (per["pred_stroma"] + per["pred_tumor"])})


def has_masks(frame) -> bool:
    """Whether a source's rows are mask tiles (a true stroma and tumour area per tile, and their image)."""
    return {"frac_stroma", "frac_tumor", "source_image", "x", "y"} <= set(frame.columns) and \
        frame[["frac_stroma", "frac_tumor"]].notna().all().all()


def tsr_scores(per_image) -> dict:
    """MAE, Spearman and stroma-high/low agreement (50 % cut-off) of per-image stroma fractions."""
    from scipy.stats import spearmanr

    from ldcsf.analysis.tsr import STROMA_HIGH_CUTOFF

    true, pred = per_image["true"].to_numpy(), per_image["pred"].to_numpy()
    return {"images": int(len(true)), "mae": float(np.mean(np.abs(true - pred))),
            "spearman": float(spearmanr(true, pred).statistic) if len(true) > 2 else None,
            "high_low_agreement": float(np.mean((true > STROMA_HIGH_CUTOFF) == (pred > STROMA_HIGH_CUTOFF)))}


def fold_manifest(full: Path, source: str, out: Path) -> Path:
    """`full` without `source`; the others' test split joins training (the held-out source is the test)."""
    import pandas as pd

    from ldcsf.data.manifest import write_manifest

    if not out.is_file():
        frame = pd.read_csv(full)
        kept = frame[~frame["dataset"].eq(source)].assign(split=lambda f: f["split"].replace({"test": "train"}))
        write_manifest(kept.reset_index(drop=True), out)
    return out


def train_fold(recipe: str, source: str, full: Path, args) -> Path:
    from ldcsf.training.train import TrainConfig, train

    fold = args.work / recipe / source
    model_file = fold / "run" / "model.pt"
    if model_file.is_file():
        return model_file
    manifest = fold_manifest(full, source, fold / "manifest.csv")
    settings = dict(RECIPES[recipe])
    if args.epochs:
        settings["epochs"] = args.epochs
    last = fold / "run" / "checkpoints" / "last.ckpt"
    config = TrainConfig(data=str(manifest), out=str(fold / "run"), seed=args.seed, num_workers=0, accelerator="cpu",
                         devices=1, progress=not args.quick, resume=last.is_file(), patience=0,
                         feature_cache=str(feature_cache_dir(RESULTS) if not args.quick else args.work / "cache"),
                         max_steps=2 if args.quick else -1, **settings)
    return train(config).model_file


def predict(model_file: Path, frame, frozen: bool, args) -> np.ndarray:
    """(N, labels) probabilities of the held-out images (cached view-0 maps for a frozen backbone)."""
    return predict_with_areas(model_file, frame, frozen, args)[0]


def predict_with_areas(model_file: Path, frame, frozen: bool, args):
    """(N, labels) probabilities and mean tile areas (None without an area head) of the held-out images.

    A frozen backbone's come from its cached view-0 maps: the backbone runs once per image for all folds.
    For an ensemble of heads the areas are a pair: the mean (N, labels) and each member's (K, N, labels).
    """
    import torch

    from ldcsf.checkpoint import load_checkpoint
    from ldcsf.data.dataset import load_rgb
    from ldcsf.data.transforms import eval_transforms
    from ldcsf.models.ensemble import ensemble_size

    loaded = load_checkpoint(model_file)
    model, meta = loaded.model, loaded.meta
    if frozen:
        features = cached_view0_maps(loaded, frame, feature_cache_dir(RESULTS) if not args.quick else args.work / "cache")
        with torch.inference_mode():
            neck = model.forward_neck(features)
            areas = torch.sigmoid(model.area_logits(neck)).mean((-2, -1)).numpy() if model.has_area_head else None
            probs = torch.sigmoid(model.forward_head(neck)).numpy()
            if areas is not None and ensemble_size(model) > 1:
                # Each member's areas too: the TSR interval of an ensemble is widened by their spread.
                _, member_maps = model.member_outputs(features)
                areas = (areas, torch.sigmoid(member_maps).mean((-2, -1)).numpy())
            return probs, areas
    transform = eval_transforms(meta)
    out = []
    for start in range(0, len(frame), 64):
        batch = torch.stack([transform(load_rgb(p)) for p in frame["path"].iloc[start:start + 64]])
        with torch.inference_mode():
            out.append(torch.sigmoid(model(batch)).numpy())
    return np.concatenate(out), loaded_tile_areas(loaded, frame) if model.has_area_head else None


def cached_view0_maps(loaded, frame, cache_dir: Path):
    """(N, C, h, w) float32 backbone maps of `frame`'s rows as the fold's heads were trained on them
    (the checkpoint's resampling and stain normalisation), from the cache (computed once when absent)."""
    from ldcsf.data.manifest import Manifest
    from ldcsf.data.transforms import stain_normalizer_from
    from ldcsf.training.area_data import FeatureCache

    meta = loaded.meta
    cache = FeatureCache(cache_dir, loaded.model, meta.input_size, meta.mean, meta.std, meta.labels,
                         interpolation=meta.interpolation, stain_normalizer=stain_normalizer_from(meta.stain_norm))
    manifest = Manifest(frame=frame.reset_index(drop=True), root=Path("/"), labels=list(meta.labels))
    return cache.load(manifest, 1, progress=False)[0][:, 0].float()


def member_columns(member_areas, labels: list[str]) -> dict:
    """`member{k}_area_stroma` and `member{k}_area_tumor` per ensemble member (none for a single model)."""
    if member_areas is None:
        return {}
    return {f"member{k}_area_{name}": member_areas[k][:, labels.index(name)]
            for k in range(len(member_areas)) for name in ("stroma", "tumor")}


def area_aurocs(areas: np.ndarray, frame, labels: list[str]) -> dict:
    """Per label annotated with both classes: AUROC of the tile's estimated area against its presence label."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, name in enumerate(labels):
        known = frame[name].notna().to_numpy() if name in frame.columns else np.zeros(len(frame), bool)
        truth = frame[name].to_numpy()[known] if known.any() else []
        if len(set(truth)) == 2 and np.isfinite(areas[:, j]).all():
            out[name] = float(roc_auc_score(truth, areas[known, j]))
    if {"stroma", "tumor"} <= set(labels) & set(frame.columns):
        # Tiles of stroma alone vs tumour alone, ranked by the estimated stroma / (stroma + tumour): a TSR's own question.
        s, t = areas[:, labels.index("stroma")], areas[:, labels.index("tumor")]
        pure = frame["stroma"].eq(1).to_numpy() ^ frame["tumor"].eq(1).to_numpy()
        pure &= frame[["stroma", "tumor"]].notna().all(axis=1).to_numpy()
        share = s / np.maximum(s + t, 1e-6)
        if len(set(frame["stroma"].to_numpy()[pure])) == 2:
            out["stroma_vs_tumor"] = float(roc_auc_score(frame["stroma"].to_numpy()[pure], share[pure]))
    return out


def run_fold(recipe: str, source: str, full: Path, args) -> dict:
    import pandas as pd
    from PIL import Image

    from ldcsf.checkpoint import read_checkpoint_payload
    from ldcsf.evaluation.metrics import compute_metrics
    from ldcsf.utils.atomic import write_json_atomic

    done = args.work / recipe / source / "scores.json"
    if done.is_file():
        return json.loads(done.read_text())
    model_file = train_fold(recipe, source, full, args)
    meta = read_checkpoint_payload(model_file)[0]
    if source in EXTRA_HELD_OUT:
        held = extra_rows(source, args, tiling(recipe))
    else:
        frame = pd.read_csv(full)
        held = frame[frame["dataset"].eq(source)]
    probs, areas = predict_with_areas(model_file, held, bool(RECIPES[recipe].get("freeze_backbone")), args)
    areas, member_areas = areas if isinstance(areas, tuple) else (areas, None)
    targets = held[meta.labels].to_numpy(dtype=np.float32)
    tsr = None
    if has_masks(held):  # per tile areas kept beside the scores (the interval coverage reads them)
        per_tile = probs if areas is None else areas  # without an area head, presence stands in (as tile_areas)
        with Image.open(held["path"].iloc[0]) as first:
            tile_px = first.width  # mask tiles are square: 128 px for GlaS, 112 px for WSSS4LUAD (at 112 µm)
        tiles_out = held[["path", "source_image", "x", "y", "frac_stroma", "frac_tumor"]].assign(
            row=held["y"] // tile_px, col=held["x"] // tile_px,
            **{f"area_{name}": per_tile[:, i] for i, name in enumerate(meta.labels)},
            **member_columns(member_areas, list(meta.labels)))
        tiles_out.to_csv(done.parent / "tile_areas.csv", index=False)
        tsr = tsr_scores(image_tsr(held, per_tile, list(meta.labels)))
    report = compute_metrics(probs, targets, meta.labels, meta.thresholds).to_dict()
    stroma = meta.labels.index("stroma")
    result = {"recipe": recipe, "source": source, "images": int(len(held)), "metrics": report,
              "called_stroma": float(np.mean(probs[:, stroma] >= meta.thresholds[stroma])),
              "mean_p_stroma": float(np.mean(probs[:, stroma])),
              **({"tsr": tsr} if tsr is not None else {}),
              # The estimated areas ranked against the presence labels: what a TSR is made of, on every source.
              **({"area_auroc": area_aurocs(areas, held, list(meta.labels))} if areas is not None else {}),
              "training_seconds": _training_seconds(model_file.parent)}
    write_json_atomic(done, result)
    return result


def _training_seconds(run_dir: Path) -> float | None:
    """Wall time from the run's config to its model file (what a user waits for)."""
    config, model = run_dir / "config.json", run_dir / "model.pt"
    return model.stat().st_mtime - config.stat().st_mtime if config.is_file() and model.is_file() else None


def label_rows(results: list[dict], labels: list[str]) -> list[list[str]]:
    rows = []
    for r in results:
        per = r["metrics"]["per_label"]
        cells = []
        for name in labels:
            m = per.get(name, {})
            annotated = m.get("annotated") or 0
            cells.append("—" if not annotated else f"{fmt(m.get('accuracy'), 2)} / {fmt(m.get('auroc'), 2)}")
        rows.append([r["source"], r["recipe"], r["images"], *cells, f"{100 * r['called_stroma']:.0f}%",
                     fmt(r.get("training_seconds"), 0)])
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    manifests = {}  # one per field and input size the recipes decide on
    results = []
    for source in args.sources:
        for recipe in args.recipes:
            cut = tiling(recipe)
            field = cut.field_um
            if cut not in manifests:
                manifests[cut] = with_extra_sources(pancancer(args, cut), args, cut)
            print(f"-- {recipe}, {source} held out", file=sys.stderr, flush=True)
            if field != FIELD_UM and source not in MASKED:
                print(f"   {source} ships {FIELD_UM} µm tiles: {recipe}'s {field} µm scores on it are not comparable "
                      "with a 112 µm recipe's", file=sys.stderr, flush=True)
            results.append(run_fold(recipe, source, manifests[cut], args))
    labels = ["stroma", "necrosis", "non_tumor", "tumor"]
    machine = machine_info("cpu")
    md = ["# Leave-one-source-out (pan-cancer set from the shared real H&E images)\n",
          provenance(machine, command_line(), now()),
          "Each row: a model trained without the source, scored on all its images. Cells: accuracy at the "
          "model's tuned thresholds / AUROC, for the labels the source annotates (— = not annotated). "
          "'called stroma': share of the source's images with p(stroma) above its threshold.\n",
          markdown_table(["held-out source", "recipe", "images", *labels, "called stroma", "training s"],
                         label_rows(results, labels))]
    scored = [r for r in results if r.get("tsr")]
    if scored:
        md += ["\nStroma fraction, stroma / (stroma + tumour), per held-out image with tumour in its mask: "
               "the model's estimated areas summed over the image's tiles vs the mask's.\n",
               markdown_table(["held-out source", "recipe", "images", "MAE", "Spearman", "high/low agreement"],
                              [[r["source"], r["recipe"], r["tsr"]["images"], fmt(r["tsr"]["mae"], 3),
                                fmt(r["tsr"]["spearman"], 2), f"{100 * r['tsr']['high_low_agreement']:.0f}%"]
                               for r in scored])]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "machine": machine.to_dict(),
                                            "results": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
