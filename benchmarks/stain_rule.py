"""How far does haematoxylin density alone rank the stroma fraction of the masked sources?

No model and no training: each image is brought to the scale the model sees (GlaS from its
0.62 µm/px to 0.875 µm/px; WSSS4LUAD's mask tiles, cut at 112 px and fed at 128 px, by 128/112),
its tissue found with GlaS's unstained rule (`data.glas.unstained`), and each tissue pixel's
haematoxylin measured as the model's stain channels measure it (`models.stain_channels`: colour
deconvolution, averaged over about one nucleus). The rule's stroma estimate is the share of tissue
whose haematoxylin lies at or below a threshold; it is ranked against the mask's stroma / (stroma +
tumour), images with tumour in their mask only, as loso.py scores the models. The result says
whether the measures carry signal across labs before a head is trained on them (docs/results.md,
"Stain measures beside the map").

    .venv/bin/python benchmarks/stain_rule.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import stats

from _common import RESULTS, SHARED_DATA, command_line, markdown_table, now, provenance, write_results
from ldcsf.benchmarking.machine import machine_info
from ldcsf.data.glas import SOURCE_MPP, STROMA, TILE_MPP, TUMOR, class_mask, read_glas_manifest, unstained
from ldcsf.data.pancancer import MASK_TILE_SIZE
from ldcsf.models.stain_channels import MEASURES, NUCLEAR_OD, stain_measures

#: WSSS4LUAD's mask tiles are cut at MASK_TILE_SIZE px and fed to the model at 128 px.
WSSS_SCALE = 128 / MASK_TILE_SIZE


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=RESULTS / "stain_rule")
    return p.parse_args(argv)


def glas_images(data: Path):
    """(RGB, stroma mask, tumour mask, scale) of GlaS's malignant images, by the project's mask rule
    (`data.glas.class_mask`: gland = tumour, the rest stroma, unstained pixels neither), as loso.py
    scores them."""
    folder = data / "glas"
    frame = read_glas_manifest(folder)
    for row in frame[frame["glas_grade"] == "malignant"].itertuples():
        rgb = np.asarray(Image.open(folder / row.image).convert("RGB"))
        gland = np.asarray(Image.open(folder / row.mask).convert("L")) > 0
        classes = class_mask(gland, unstained(rgb), malignant=True)
        yield rgb, classes == STROMA, classes == TUMOR, SOURCE_MPP / TILE_MPP


def wsss_images(data: Path):
    """(RGB, stroma mask, tumour mask, scale) of the WSSS4LUAD validation images with both files."""
    folder = data / "wsss4luad" / "validation"
    for path in sorted((folder / "img").glob("*.png")):
        mask = np.asarray(Image.open(folder / "mask" / path.name))
        yield np.asarray(Image.open(path).convert("RGB")), mask == STROMA, mask == TUMOR, WSSS_SCALE


def pixel_measures(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, torch.Tensor]:
    """(tissue mask, every stain measure per pixel) of an image resampled by `scale`."""
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    tensor = torch.from_numpy(small.copy()).permute(2, 0, 1)[None].float() / 255.0
    # A grid of the image's own size keeps one value per pixel; the nuclear shares are then 0/1 per pixel.
    measures = stain_measures(tensor, small.shape[:2])[0]
    return ~unstained(small), measures


def score(images) -> tuple[dict, int]:
    truths, estimates = [], {t: [] for t in NUCLEAR_OD}
    for rgb, stroma, tumour, scale in images:
        if not tumour.any():
            continue
        truths.append(stroma.sum() / (stroma.sum() + tumour.sum()))
        tissue, measures = pixel_measures(rgb, scale)
        for t in NUCLEAR_OD:
            nuclear = measures[MEASURES.index(f"nuclear>{t}")].numpy() > 0.5
            estimates[t].append(float((~nuclear[tissue]).mean()) if tissue.any() else float("nan"))
    truth = np.asarray(truths)
    out = {}
    for t, values in estimates.items():
        values = np.asarray(values)
        out[str(t)] = {"spearman": float(stats.spearmanr(values, truth).statistic),
                       "mae": float(np.nanmean(np.abs(values - truth)))}
    return out, len(truth)


def main(argv=None) -> int:
    args = parse_args(argv)
    results, rows = {}, []
    for source, images in (("glas", glas_images(args.data)), ("wsss4luad_masks", wsss_images(args.data))):
        try:
            scores, n = score(images)
        except FileNotFoundError as err:  # the shared data folder is elsewhere, or incomplete
            raise SystemExit(str(err)) from None
        results[source] = {"images": n, "by_threshold": scores}
        rows += [[source, n, t, f"{s['spearman']:.2f}", f"{s['mae']:.3f}"] for t, s in scores.items()]
    command, date = command_line(), now()
    md = ("# Haematoxylin density alone against the masks' stroma fraction\n\n"
          + provenance(machine_info(), command, date)
          + "\nStroma estimate: share of tissue pixels whose haematoxylin (averaged over about one nucleus, "
            "optical density) is at most the threshold. No training.\n\n"
          + markdown_table(["source", "images", "threshold (OD)", "Spearman", "MAE"], rows))
    write_results(args.out, md, {"command": command, "date": date, "results": results})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
