"""Which depth of the frozen backbone carries across sources? A linear probe per stage, held out by source.

The recipe's frozen EfficientNet-Lite0 (ImageNet weights, 128 px at 0.875 µm/px, no augmentation)
is run once over the pan-cancer set with GlaS; each block's output map (and the final 1x1
convolution's, "head", the map the recipe used to read) is averaged over the tile. Per depth,
held out by source as loso.py holds out, with no trained head in between:

- stroma fraction: a ridge regression of each tile's stroma and tumour area fraction, trained on
  the other masked source's tiles alone (GlaS held out: WSSS4LUAD's; WSSS4LUAD held out: GlaS's),
  scored per image with tumour in its mask (MAE, Spearman, stroma-high/low agreement);
- presence: a logistic regression per label trained on every other source, AUROC on NCT-CRC-HE
  (stroma, tumour) and oral carcinoma (tumour).

A few depths are also probed side by side (`COMBINED`: their pooled maps concatenated). It
answers where the transferable signal is before a recipe is trained on it (docs/results.md,
"Mid-level maps on sources never trained on"); the recipes themselves are compared by loso.py.

    .venv/bin/python benchmarks/depth_probe.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, command_line, markdown_table, now, write_results
from _recipe import BACKBONE
from loso import extra_rows, image_tsr, pancancer, tsr_scores

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]
#: Lite0's blocks 3-6 (strides 16, 16, 32, 32) and its final 1x1 convolution; blocks 0-2 are too shallow to matter.
DEPTHS = ("blocks.3", "blocks.4", "blocks.5", "blocks.6", "head")
#: Two depths side by side (the stride-32 map upsampled onto the stride-16 one pools to the same
#: vector as the two pooled maps concatenated): does a deeper, wider view add to the mid-level map?
COMBINED = (("blocks.4", "blocks.5"), ("blocks.4", "blocks.6"), ("blocks.3", "blocks.4", "blocks.5"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--work", type=Path, default=RESULTS / "heldout_work" / "seed0",
                   help="loso.py's work folder: the manifest and GlaS tiles are read from (or written to) it")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS / "depth_probe", help="results stem (.md, .json)")
    return p.parse_args(argv)


def rows(args):
    """The pan-cancer set (oral capped, as the recipe's) and GlaS's mask tiles, absolute paths."""
    import pandas as pd

    where = types.SimpleNamespace(data=args.data, work=args.work, extra_work=args.work, quick=False, train_with=[])
    return pd.concat([pd.read_csv(pancancer(where)), extra_rows("glas", where)], ignore_index=True)


def pooled_maps(paths) -> dict[str, np.ndarray]:
    """Per depth, (N, C) maps averaged over each 128 px tile, from one pass of the pretrained backbone."""
    import torch
    from PIL import Image

    from ldcsf.models.backbones import create_backbone
    from ldcsf.utils.progress import tqdm

    net = create_backbone(BACKBONE["backbone"], pretrained=True).eval()
    config = net.pretrained_cfg
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    size = BACKBONE["img_size"]
    maps: dict[str, torch.Tensor] = {}
    for depth in DEPTHS[:-1]:
        net.get_submodule(depth).register_forward_hook(lambda _m, _i, out, d=depth: maps.__setitem__(d, out))
    pooled: dict[str, list] = {d: [] for d in DEPTHS}
    for start in tqdm(range(0, len(paths), 64), desc="backbone maps", unit="batch"):
        tiles = []
        for path in paths[start:start + 64]:
            with Image.open(path) as image:
                tiles.append(np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC)))
        x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            maps["head"] = net.forward_features((x - mean) / std)
        for depth in DEPTHS:
            pooled[depth].append(maps[depth].mean((2, 3)).numpy())
    return {d: np.concatenate(v) for d, v in pooled.items()}


def stroma_fraction_fold(frame, x, held: str) -> dict:
    """Ridge on the other masked source's tile areas; the held-out source's images scored."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    masked = frame["frac_stroma"].notna() & frame["frac_tumor"].notna()
    train, test = masked & frame["dataset"].ne(held), frame["dataset"].eq(held)
    areas = np.zeros((int(test.sum()), len(LABELS)))
    for column, target in ((LABELS.index("stroma"), "frac_stroma"), (LABELS.index("tumor"), "frac_tumor")):
        fit = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13))).fit(x[train], frame.loc[train, target])
        areas[:, column] = np.clip(fit.predict(x[test]), 0, 1)
    return tsr_scores(image_tsr(frame[test], areas, LABELS))


def presence_auroc(frame, x, held: str, label: str) -> float:
    """Logistic regression on every other source's annotations; AUROC on the held-out source."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    annotated = frame[label].notna()
    train, test = annotated & frame["dataset"].ne(held), annotated & frame["dataset"].eq(held)
    fit = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)).fit(x[train], frame.loc[train, label])
    return float(roc_auc_score(frame.loc[test, label], fit.predict_proba(x[test])[:, 1]))


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    frame = rows(args)
    maps = pooled_maps(list(frame["path"]))
    maps.update({"+".join(depths): np.concatenate([maps[d] for d in depths], axis=1) for depths in COMBINED})
    results, table = {}, []
    for depth, x in maps.items():
        glas, wsss = stroma_fraction_fold(frame, x, "glas"), stroma_fraction_fold(frame, x, "wsss4luad_masks")
        aurocs = {"nct_crc stroma": presence_auroc(frame, x, "nct_crc", "stroma"),
                  "nct_crc tumor": presence_auroc(frame, x, "nct_crc", "tumor"),
                  "oral tumor": presence_auroc(frame, x, "oral", "tumor")}
        results[depth] = {"channels": int(x.shape[1]), "glas": glas, "wsss4luad_masks": wsss, "auroc": aurocs}
        table.append([depth, x.shape[1], *(f"{s['mae']:.3f} / {s['spearman']:.2f} / {100 * s['high_low_agreement']:.0f}%"
                                           for s in (glas, wsss)), *(f"{v:.2f}" for v in aurocs.values())])
    md = ["# Which depth of the frozen backbone carries across sources (linear probes, held out by source)\n",
          f"- command: `{command_line()}`\n- date: {now()}\n- images: "
          + ", ".join(f"{k} {v}" for k, v in frame["dataset"].value_counts().items()) + "\n",
          "Stroma fraction per held-out image with tumour in its mask: MAE / Spearman / stroma-high/low agreement "
          "(ridge trained on the other masked source). AUROC: logistic regression trained on every other source.\n",
          markdown_table(["depth", "channels", "GlaS held out", "WSSS4LUAD held out", "NCT-CRC-HE stroma AUROC",
                          "NCT-CRC-HE tumour AUROC", "oral tumour AUROC"], table)]
    write_results(args.out, "\n".join(md), {"command": command_line(), "date": now(), "backbone": BACKBONE,
                                            "depths": results})
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
