"""Presence per tile on sources never trained on: the presence head at its threshold, or the area head's estimate.

A tile's "stroma present" can be read two ways from one model: the presence head's probability at
the threshold chosen on the training run's validation split (what `ldcsf predict` reports), or
the area head's estimated share of the tile at the rule the mask labels were made with (present
at >= 5 % of the tile, `ldcsf.data.masks`). The first threshold is set on a mix of sources whose
labels mean different things (a mask tile has stroma from 5 % of its area; a tile-labelled
source calls a tile stroma when stroma is its dominant tissue), and it swings with that mix. This
script scores both readings on each held-out source with the recommended recipe's fold models
(`loso.py`, one per seed): accuracy, balanced accuracy (the mean of sensitivity and specificity:
GlaS has stroma in 97 % of its tiles, so plain accuracy rewards calling it everywhere) and the
share called present; and, for the sources labelled per tile, what the presence head says of each
class (is NCT-CRC-HE's plain stroma called stroma, or non-tumour?). Trains nothing.

    R=lite0_area_mid_views_ens3
    .venv/bin/python benchmarks/heldout_presence_rule.py --recipe $R --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from _common import RESULTS, command_line, fmt, markdown_table, now, write_results
from _recipe import RECIPES, RECOMMENDED

#: The mask labels' rule (`ldcsf.data.masks.present_at`): a label covering 5 % of a tile is present.
PRESENT_AT = 0.05
MANIFEST = RESULTS / "tsr_work" / "pancancer" / "manifest_capped.csv"
SOURCES = ("glas", "wsss4luad_masks", "nct_crc", "oral")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=RECOMMENDED, choices=list(RECIPES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    p.add_argument("--root", type=Path, default=RESULTS / "heldout_work",
                   help="loso.py's folds: seed<K>/RECIPE/glas, the others under seed<K>_with_glas/RECIPE/")
    p.add_argument("--manifest", type=Path, default=MANIFEST,
                   help="the pan-cancer manifest the folds were cut from (loso.py's, absolute paths)")
    p.add_argument("--recompute-maps", action="store_true",
                   help="run the backbone over the tiles instead of reading loso.py's cached maps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS / "heldout_presence_rule", help="results stem (.md, .json)")
    return p.parse_args(argv)


def fold_of(root: Path, recipe: str, seed: int, source: str) -> Path:
    """GlaS's fold trains without it on the default set; the others' with GlaS joining training."""
    return root / (f"seed{seed}" if source == "glas" else f"seed{seed}_with_glas") / recipe / source


def read_table(table: Path) -> pd.DataFrame:
    if not table.is_file():
        raise SystemExit(f"{table}: not found (loso.py writes it when it runs the fold)")
    return pd.read_csv(table)


def held_rows(root: Path, seed: int, source: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """The held-out source's rows, as loso.py scored them (GlaS: its tiles under the seed's extra/ folder)."""
    if source == "glas":
        return read_table(root / f"seed{seed}" / "extra" / "glas" / "rows.csv")
    return manifest[manifest["dataset"].eq(source)].reset_index(drop=True)


def readings(fold: Path, held: pd.DataFrame, cached: bool = True) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(labels, presence probabilities, the fold's thresholds, mean estimated areas) of the held-out tiles
    (`cached`: from loso.py's cached backbone maps, as it scored the fold)."""
    from loso import predict_with_areas  # imports torch: only when predicting

    from ldcsf.checkpoint import read_checkpoint_payload

    model = fold / "run" / "model.pt"
    if not model.is_file():
        raise SystemExit(f"{model}: no fold model (run loso.py for it)")
    meta = read_checkpoint_payload(model)[0]
    probs, areas = predict_with_areas(model, held, cached, SimpleNamespace(quick=False))
    areas = areas[0] if isinstance(areas, tuple) else areas
    return list(meta.labels), probs, np.asarray(meta.thresholds, dtype=float), areas


def scores(truth: np.ndarray, called: np.ndarray) -> dict:
    """Accuracy, balanced accuracy and the share called present (balanced: None unless both classes occur)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    truth, called = truth.astype(bool), called.astype(bool)
    two_classes = truth.any() and (~truth).any()
    return {"accuracy": float(accuracy_score(truth, called)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, called)) if two_classes else None,
            "called": float(called.mean()), "present": float(truth.mean())}


def fold_scores(labels, probs, thresholds, areas, held: pd.DataFrame) -> dict:
    """Per annotated label: both readings scored against the source's presence labels."""
    out = {}
    for j, name in enumerate(labels):
        if name not in held.columns or held[name].isna().all():
            continue
        known = held[name].notna().to_numpy()
        truth = held[name].to_numpy()[known] > 0.5
        out[name] = {"head": scores(truth, probs[known, j] >= thresholds[j]),
                     "area": scores(truth, areas[known, j] >= PRESENT_AT)}
    return out


def class_presence(labels, probs, thresholds, held: pd.DataFrame, fold: str) -> pd.DataFrame:
    """Per tile of a tile-labelled source: its class, the fold, each label's probability and call."""
    return held[["source_class"]].assign(
        fold=fold, **{f"p_{name}": probs[:, j] for j, name in enumerate(labels)},
        **{f"called_{name}": probs[:, j] >= thresholds[j] for j, name in enumerate(labels)})


def class_table(tiles: pd.DataFrame, labels: list[str]) -> list[dict]:
    """Per source class: tiles (one fold's), mean probability and share called present of each label, over folds."""
    rows = []
    for cls, part in tiles.groupby("source_class", sort=True):
        rows.append({"source_class": cls, "tiles": int(part.groupby("fold").size().iloc[0]),
                     **{f"p_{n}": float(part[f"p_{n}"].mean()) for n in labels},
                     **{f"called_{n}": float(part[f"called_{n}"].mean()) for n in labels}})
    return rows


def mean_over_seeds(per_seed: list[dict]) -> dict:
    """{label: {reading: {metric: mean}}} over the seeds' fold scores."""
    out = {}
    for name in per_seed[0]:
        out[name] = {}
        for reading in ("head", "area"):
            values = [s[name][reading] for s in per_seed]
            out[name][reading] = {k: (None if any(v[k] is None for v in values) else float(np.mean([v[k] for v in values])))
                                  for k in values[0]}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    # The pan-cancer manifest (every source but GlaS), read once when a source needs it.
    manifest = read_table(args.manifest) if set(args.sources) - {"glas"} else None
    results, by_class = {}, {}
    for source in args.sources:
        per_seed, tiles = [], []
        for seed in args.seeds:
            held = held_rows(args.root, seed, source, manifest)
            print(f"-- {source} seed {seed}: {len(held)} tiles", file=sys.stderr, flush=True)
            fold = fold_of(args.root, args.recipe, seed, source)
            labels, probs, thresholds, areas = readings(fold, held, cached=not args.recompute_maps)
            per_seed.append(fold_scores(labels, probs, thresholds, areas, held))
            if "mask" not in held.columns or held["mask"].isna().all():  # a tile-labelled source: its classes
                tiles.append(class_presence(labels, probs, thresholds, held, str(fold)))
        results[source] = {"tiles": int(len(held)), "seeds": per_seed, "mean": mean_over_seeds(per_seed)}
        if tiles:
            by_class[source] = class_table(pd.concat(tiles, ignore_index=True), labels)
    rows = []
    for source, result in results.items():
        for name, by in result["mean"].items():
            h, a = by["head"], by["area"]
            rows.append([source, name, f"{100 * h['present']:.0f} %",
                         f"{fmt(h['accuracy'], 2)} / {fmt(h['balanced_accuracy'], 2)} / {100 * h['called']:.0f} %",
                         f"{fmt(a['accuracy'], 2)} / {fmt(a['balanced_accuracy'], 2)} / {100 * a['called']:.0f} %"])
    md = [f"# Presence on sources never trained on: the head at its threshold, or the area estimate (recipe {args.recipe})\n",
          f"- command: `{command_line()}`\n- date: {now()}\n- seeds: {args.seeds} (means over them)\n",
          f"Each cell: accuracy / balanced accuracy / share of tiles called present. Head: presence probability at "
          f"the fold's validation threshold. Area: the tile's estimated share of the label >= {PRESENT_AT:.0%} "
          "(the rule of the mask labels).\n",
          markdown_table(["held-out source", "label", "tiles labelled present", "presence head", "area >= 5 %"], rows)]
    if by_class:
        names = list(labels)
        class_rows = [[source, r["source_class"], r["tiles"],
                       *[f"{fmt(r[f'p_{n}'], 2)} ({100 * r[f'called_{n}']:.0f} %)" for n in names]]
                      for source, table in by_class.items() for r in table]
        md += ["\nWhat the presence head says per class of the tile-labelled sources: mean probability (share "
               "of tiles called present at the fold's threshold), over the seeds' folds.\n",
               markdown_table(["held-out source", "class", "tiles", *names], class_rows)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "recipe": args.recipe,
                                            "seeds": args.seeds, "present_at": PRESENT_AT, "sources": results,
                                            "classes": by_class})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
